{{/* The release's base name: the release name, with "-gatehouse" unless it already says so. */}}
{{- define "gatehouse.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The services this chart deploys, in start order: each is one Deployment. */}}
{{- define "gatehouse.components" -}}
audit authz vault edge
{{- end -}}

{{/* Labels that select one component's pods: the Deployment, Service, PDB and HPA share them. */}}
{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every label of one component's objects. */}}
{{- define "gatehouse.labels" -}}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/part-of: gatehouse
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* An environment variable read from a Secret; `ref` names the entry under `secrets`. */}}
{{- define "gatehouse.secretEnv" -}}
{{- $secret := index .root.Values.secrets .ref -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "secrets.%s.existingSecret is required" .ref) $secret.existingSecret }}
      key: {{ required (printf "secrets.%s.key is required" .ref) $secret.key }}
{{- end -}}

{{/* The `[telemetry]` table every service reads; an empty OTLP endpoint means no export. */}}
{{- define "gatehouse.telemetry" -}}
{{- $telemetry := dict "log_format" .Values.telemetry.log_format "log_filter" .Values.telemetry.log_filter -}}
{{- with .Values.telemetry.otlp_endpoint }}{{ $_ := set $telemetry "otlp_endpoint" . }}{{ end -}}
{{- toJson $telemetry -}}
{{- end -}}

{{/* A component's container ports, by name: gRPC for the backends, HTTP where a face is public. */}}
{{- define "gatehouse.ports" -}}
{{- $values := index .root.Values .component -}}
{{- $ports := dict -}}
{{- with $values.grpcPort }}{{ $_ := set $ports "grpc" (int .) }}{{ end -}}
{{- with $values.httpPort }}{{ $_ := set $ports "http" (int .) }}{{ end -}}
{{- with $values.metricsPort }}{{ $_ := set $ports "metrics" (int .) }}{{ end -}}
{{- toJson $ports -}}
{{- end -}}
