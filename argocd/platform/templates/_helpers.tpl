{{/* The environment being rendered (env mode), failing on an unknown name. */}}
{{- define "platform.envConfig" -}}
{{- $cfg := get .Values.environments .Values.env -}}
{{- if not $cfg -}}
{{- fail (printf "env %q is not one of %s" .Values.env (keys .Values.environments | sortAlpha | join ", ")) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Labels and the sync-wave annotation of one Application.
     dict: root, tier (infrastructure|services|routing), wave, component */}}
{{- define "platform.appMeta" -}}
namespace: {{ .root.Values.argocdNamespace }}
labels:
  app.kubernetes.io/part-of: microservices-platform
  app.kubernetes.io/component: {{ .component }}
  platform.microservices/env: {{ .root.Values.env }}
  platform.microservices/tier: {{ .tier }}
annotations:
  argocd.argoproj.io/sync-wave: {{ .wave | quote }}
finalizers:
  - resources-finalizer.argocd.argoproj.io
{{- end -}}

{{/* destination + syncPolicy of one Application.
     dict: root, namespace, serverSideApply (bool), respectIgnoreDifferences (bool) */}}
{{- define "platform.destinationAndSync" -}}
{{- $cfg := include "platform.envConfig" .root | fromYaml -}}
destination:
  name: {{ $cfg.cluster }}
  namespace: {{ .namespace }}
syncPolicy:
  {{- if $cfg.autoSync }}
  automated:
    prune: true
    selfHeal: true
  {{- end }}
  syncOptions:
    - CreateNamespace=true
    - PruneLast=true
    {{- if .serverSideApply }}
    - ServerSideApply=true
    {{- end }}
    {{- if .respectIgnoreDifferences }}
    - RespectIgnoreDifferences=true
    {{- end }}
  {{- with get .root.Values.namespaceMetadata .namespace }}
  managedNamespaceMetadata:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  retry:
    {{- toYaml .root.Values.sync.retry | nindent 4 }}
{{- end -}}

{{/* An upstream chart source. dict: chart ({repo,name,version}), release, values,
     valueFiles (paths in this repository, needs a source with ref: values), root */}}
{{- define "platform.chartSource" -}}
repoURL: {{ .chart.repo }}
chart: {{ .chart.name }}
targetRevision: {{ .chart.version | quote }}
helm:
  releaseName: {{ .release }}
  {{- with .valueFiles }}
  valueFiles:
    {{- range . }}
    - $values/{{ tpl . $.root }}
    {{- end }}
  {{- end }}
  {{- with .values }}
  valuesObject:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* What the Argo Rollouts controller changes in the routing of a service with rollout: true
     (argument: the service name): the weights of its VirtualService routes and the
     rollouts-pod-template-hash label it adds to its DestinationRule subsets. Ignored with
     RespectIgnoreDifferences=true, so neither self-heal nor a sync undoes a running rollout. */}}
{{- define "platform.rolloutRoutingIgnores" -}}
- group: networking.istio.io
  kind: VirtualService
  name: {{ . }}
  jqPathExpressions: [".spec.http[]?.route[]?.weight"]
- group: networking.istio.io
  kind: DestinationRule
  name: {{ . }}
  jqPathExpressions: [".spec.subsets[]?.labels[\"rollouts-pod-template-hash\"]"]
{{- end -}}
