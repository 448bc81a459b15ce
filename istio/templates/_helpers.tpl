{{/* <name>.<namespace>.svc.cluster.local */}}
{{- define "mesh.fqdn" -}}
{{- printf "%s.%s.svc.cluster.local" .name .namespace -}}
{{- end }}

{{/* SPIFFE-style principal: <trustDomain>/ns/<namespace>/sa/<serviceAccount> */}}
{{- define "mesh.principal" -}}
{{- printf "%s/ns/%s/sa/%s" .root.Values.trustDomain .namespace .sa -}}
{{- end }}

{{- define "mesh.labels" -}}
app.kubernetes.io/name: mesh
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* A service's settings: defaults overlaid with services.<name>. Call with (dict "root" $ "name" NAME). */}}
{{- define "mesh.service" -}}
{{- $own := index .root.Values.services .name | default dict -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.defaults) (deepCopy $own)) -}}
{{- end }}

{{/*
Two HTTP routes sharing a destination: GET/HEAD with retries, then every other method with
retries switched off (Istio's default would retry a POST). Call with (dict "name" N "match" MAP
"route" LIST "timeout" T "retries" R); "match" holds extra conditions (e.g. headers), or empty.
Returns a YAML list.
*/}}
{{- define "mesh.routePair" -}}
{{- $idempotent := list -}}
{{- range $m := list "GET" "HEAD" -}}
{{- $idempotent = append $idempotent (mergeOverwrite (dict "method" (dict "exact" $m)) (deepCopy $.match)) -}}
{{- end -}}
{{- $retry := dict "attempts" (int .retries.attempts) "perTryTimeout" .retries.perTryTimeout "retryOn" .retries.retryOn -}}
{{- $first := dict "name" (printf "%s-idempotent" .name) "match" $idempotent "route" .route "timeout" .timeout "retries" $retry -}}
{{- $second := dict "name" .name "route" .route "timeout" .timeout "retries" (dict "attempts" 0) -}}
{{- if .match }}{{ $_ := set $second "match" (list .match) }}{{ end -}}
{{- toYaml (list $first $second) -}}
{{- end }}

{{/* Destination of one subset: (dict "host" H "port" P "subset" S "weight" W) */}}
{{- define "mesh.destination" -}}
{{- toYaml (dict "destination" (dict "host" .host "port" (dict "number" (int .port)) "subset" .subset) "weight" (int .weight)) -}}
{{- end }}

{{/* Namespaces that hold mesh workloads of the platform: the services' and Kong's. */}}
{{- define "mesh.namespaces" -}}
{{- toYaml (uniq (list .Values.namespace .Values.kong.namespace)) -}}
{{- end }}
