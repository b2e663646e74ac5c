{{- define "gpuconform.name" -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "gpuconform.labels" -}}
app.kubernetes.io/name: gpuconform
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gpuconform
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "gpuconform.plan" -}}
{{- if .Values.plan -}}
{{ .Values.plan }}
{{- else -}}
# The chart's default plan: verify-only, in-cluster configuration.
name: nightly
description: nightly verify-only run of the GPU Operator, in the cluster
target:
  kubeconfig: {}
operator:
  mode: existing
  namespace: {{ .Values.operator.namespace }}
  release: {{ .Values.operator.release }}
expectDriver:
  branch: "580"
testNamespace:
  name: {{ .Release.Namespace }}
suites:
  - gpu-stack
  - throughput
  - teardown
{{- end -}}
{{- end -}}
