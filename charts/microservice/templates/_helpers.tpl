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

{{/* Selector of one track's pods: the Service selects on `app` only, everything else on both.
     A Rollout's pods change track (canary -> stable) without being replaced: Argo Rollouts sets
     `version` as ephemeral metadata, so the selector names the release instead. */}}
{{- define "ms.selectorLabels" -}}
app: {{ .Values.app }}
{{- if .Values.rollout.enabled }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- else }}
version: {{ .Values.track }}
{{- end }}
{{- end -}}

{{/* Labels on per-track objects and pods. */}}
{{- define "ms.labels" -}}
{{ include "ms.sharedLabels" . }}
{{- if not .Values.rollout.enabled }}
version: {{ .Values.track }}
{{- end }}
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
{{- if and .Values.rollout.enabled (or (ne .Values.track "stable") (not .Values.primary)) -}}
{{- fail "rollout.enabled: the Rollout runs both tracks itself; use track: stable, primary: true and no second release" -}}
{{- end -}}
{{- if and .Values.keda.enabled (gt (int .Values.keda.minReplicas) (int .Values.keda.maxReplicas)) -}}
{{- fail "keda.minReplicas must not exceed keda.maxReplicas" -}}
{{- end -}}
{{- end -}}

{{/* Replicas belong to an autoscaler (HPA, or KEDA's HPA): the workload leaves them out. */}}
{{- define "ms.externallyScaled" -}}
{{- if or .Values.autoscaling.enabled .Values.keda.enabled }}true{{ end -}}
{{- end -}}

{{/* The workload the autoscalers scale: apiVersion, kind and name. */}}
{{- define "ms.scaleTarget" -}}
{{- if .Values.rollout.enabled -}}
apiVersion: argoproj.io/v1alpha1
kind: Rollout
{{- else -}}
apiVersion: apps/v1
kind: Deployment
{{- end }}
name: {{ include "ms.trackName" . }}
{{- end -}}

{{/* Pod template of the workload (Deployment or Argo Rollouts Rollout): metadata and spec. */}}
{{- define "ms.podTemplate" -}}
metadata:
  labels:
    {{- include "ms.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "ms.config" . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ .Values.app }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
  enableServiceLinks: false
  securityContext:
    {{- include "ms.podSecurityContext" . | nindent 4 }}
  # Longer than preStop sleep + the service's drain time (checked when rendering).
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .Values.app }}
      image: {{ include "ms.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command: [/app/{{ .Values.app }}]
      ports:
        - name: http
          containerPort: {{ .Values.port }}
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ include "ms.trackName" . }}
      {{- with include "ms.secretEnv" . }}
      env:
        {{- . | trim | nindent 8 }}
      {{- end }}
      startupProbe:
        httpGet:
          path: /health
          port: http
        periodSeconds: {{ .Values.probes.startup.periodSeconds }}
        failureThreshold: {{ .Values.probes.startup.failureThreshold }}
      livenessProbe:
        httpGet:
          path: /health
          port: http
        periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
      readinessProbe:
        httpGet:
          path: /ready
          port: http
        periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
      {{- if gt (int .Values.preStopSleepSeconds) 0 }}
      # The image has no shell, so `exec: sleep` is impossible: the sleep action
      # (Kubernetes >= 1.30) keeps the pod serving while endpoints are withdrawn.
      lifecycle:
        preStop:
          sleep:
            seconds: {{ .Values.preStopSleepSeconds }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- include "ms.containerSecurityContext" . | nindent 8 }}
      volumeMounts:
        {{- include "ms.volumeMounts" . | nindent 8 }}
  volumes:
    {{- include "ms.volumes" . | nindent 4 }}
  {{- if .Values.topologySpread.enabled }}
  topologySpreadConstraints:
    {{- range list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
    - topologyKey: {{ . }}
      maxSkew: {{ $.Values.topologySpread.maxSkew }}
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "ms.selectorLabels" $ | nindent 10 }}
      matchLabelKeys: [{{ ternary "rollouts-pod-template-hash" "pod-template-hash" $.Values.rollout.enabled }}]
    {{- end }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* A ClusterIP Service on the http port selecting on `app` only. dict: root, name */}}
{{- define "ms.service" -}}
{{- $v := .root.Values }}
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}
  labels:
    {{- include "ms.sharedLabels" .root | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    app: {{ $v.app }}
  ports:
    - name: http
      port: {{ $v.port }}
      targetPort: http
      protocol: TCP
      appProtocol: http
{{- end -}}

{{/* Name of the AnalysisTemplate the Rollout uses for a metric (success-rate, latency-p99):
     the service's own metrics or Istio's, per rollout.analysis.metrics. dict: root, metric */}}
{{- define "ms.analysisTemplateName" -}}
{{- $v := .root.Values -}}
{{- if eq $v.rollout.analysis.metrics "istio" -}}
{{- printf "%s-istio-%s" $v.app .metric -}}
{{- else -}}
{{- printf "%s-%s" $v.app .metric -}}
{{- end -}}
{{- end -}}
