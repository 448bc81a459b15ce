{{- define "pn.labels" -}}
app.kubernetes.io/name: platform-namespace
app.kubernetes.io/part-of: microservices-platform
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
