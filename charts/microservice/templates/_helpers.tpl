{{/* Name of per-track objects (Deployment, ConfigMap, HPA, PDB): <app>-<track>. */}}
{{- define "ms.trackName" -}}
{{- printf "%s-%s" .Values.app .Values.track -}}
{{- end -}}

{{/* Settings prefix from docs/CONTRACTS.md: user-service -> USER_SERVICE. */}}
{{- define "ms.prefix" -}}
{{- .Values.app | replace "-" "_" | upper -}}
{{- end -}}

{{- define "ms.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{/* Labels on objects shared by all tracks of a service (Service, ServiceAccount, ...). */}}
{{- define "ms.sharedLabels" -}}
app: {{ .Values.app }}
app.kubernetes.io/name: {{ .Values.app }}
app.kubernetes.io/part-of: microservices-platform
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector of one track's pods: the Service selects on `app` only, everything else on both. */}}
{{- define "ms.selectorLabels" -}}
app: {{ .Values.app }}
version: {{ .Values.track }}
{{- end -}}

{{/* Labels on per-track objects and pods. */}}
{{- define "ms.labels" -}}
{{ include "ms.sharedLabels" . }}
version: {{ .Values.track }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/component: api
{{- end -}}

{{/* Non-secret settings (ConfigMap data and the migration Job's env). */}}
{{- define "ms.config" -}}
{{- $p := include "ms.prefix" . -}}
{{- $cfg := dict "APP_ENV" .Values.appEnv "OTEL_SERVICE_NAME" .Values.app -}}
{{- $_ := set $cfg (printf "%s__HTTP__PORT" $p) (toString .Values.port) -}}
{{- $_ := set $cfg (printf "%s__HTTP__SHUTDOWN_TIMEOUT_SECONDS" $p) (toString .Values.drainSeconds) -}}
{{- range $k, $v := .Values.env }}{{ $_ := set $cfg $k (toString $v) }}{{ end -}}
{{- range $k, $v := $cfg }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* env entries that read existing Secrets. */}}
{{- define "ms.secretEnv" -}}
{{- range $name, $ref := .Values.secretEnv }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.secretName }}
      key: {{ $ref.key }}
      {{- if $ref.optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end -}}

{{- define "ms.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "ms.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Volumes for a writable /app/data and /tmp on a read-only root, plus mounted secrets. */}}
{{- define "ms.volumes" -}}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- range $name, $f := .Values.secretFiles }}
- name: secret-{{ $name }}
  secret:
    secretName: {{ $f.secretName }}
    defaultMode: 0440
    {{- if $f.optional }}
    optional: true
    {{- end }}
{{- end }}
{{- end -}}

{{- define "ms.volumeMounts" -}}
- name: data
  mountPath: /app/data
- name: tmp
  mountPath: /tmp
{{- range $name, $f := .Values.secretFiles }}
- name: secret-{{ $name }}
  mountPath: {{ $f.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* NetworkPolicy ports: numbers or names; none given means the service's http port. */}}
{{- define "ms.npPorts" -}}
{{- $ports := .ports | default (list "http") -}}
ports:
{{- range $ports }}
  - protocol: TCP
    port: {{ . }}
{{- end }}
{{- end -}}

{{/* Egress to DNS, allowed for every pod of the chart. */}}
{{- define "ms.dnsEgress" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}

{{- define "ms.validate" -}}
{{- $min := add .Values.drainSeconds .Values.preStopSleepSeconds -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $min) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + drainSeconds (%v)" .Values.terminationGracePeriodSeconds $min) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" -}}
{{- end -}}
{{- end -}}
