{{/* Names: <release>-prescale unless the release name already says prescale. */}}
{{- define "prescale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "prescale.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's object name: <fullname>-<component>. */}}
{{- define "prescale.component" -}}
{{- printf "%s-%s" (include "prescale.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "prescale.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: prescale
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "prescale.selectorLabels" . }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "prescale.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prescale.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "prescale.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Restricted Pod Security: non-root, RuntimeDefault seccomp. */}}
{{- define "prescale.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "prescale.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "prescale.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Scheduling for pods that need no GPU node. */}}
{{- define "prescale.globalScheduling" -}}
{{- with .Values.global.nodeSelector }}
nodeSelector:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.global.tolerations }}
tolerations:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.global.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* Spread replicas over nodes and zones unless the user gives an affinity. */}}
{{- define "prescale.antiAffinity" -}}
{{- if .affinity -}}
{{- toYaml .affinity -}}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "prescale.selectorLabels" . | nindent 12 }}
    - weight: 50
      podAffinityTerm:
        topologyKey: topology.kubernetes.io/zone
        labelSelector:
          matchLabels:
            {{- include "prescale.selectorLabels" . | nindent 12 }}
{{- end -}}
{{- end -}}

{{/* "true" when ServiceMonitor/PodMonitor objects are rendered. */}}
{{- define "prescale.serviceMonitors" -}}
{{- $m := .Values.monitoring.serviceMonitors -}}
{{- if or (eq $m "enabled") (and (eq $m "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor")) -}}
true
{{- end -}}
{{- end -}}

{{- define "prescale.prometheusRule" -}}
{{- $m := .Values.monitoring.prometheusRule -}}
{{- if or (eq $m "enabled") (and (eq $m "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule")) -}}
true
{{- end -}}
{{- end -}}

{{/* Pod annotations for annotation-based scraping (only without ServiceMonitors). */}}
{{- define "prescale.scrapeAnnotations" -}}
{{- if and .root.Values.monitoring.scrapeAnnotations (not (include "prescale.serviceMonitors" .root)) }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
prometheus.io/scheme: {{ .scheme | default "http" }}
{{- end }}
{{- end -}}

{{/* "true" when the exporters scrape the node's serving pods (then Prometheus must not, or
the inference_* series would count twice). */}}
{{- define "prescale.exporterScrapesServing" -}}
{{- if and .Values.exporter.enabled .Values.exporter.kubeletPods.enabled -}}
true
{{- end -}}
{{- end -}}

{{/* The adapter's TLS mode after resolving auto. */}}
{{- define "prescale.adapterTLSMode" -}}
{{- $m := .Values.adapter.tls.mode -}}
{{- if eq $m "auto" -}}
{{- if .Capabilities.APIVersions.Has "cert-manager.io/v1/Certificate" -}}certManager{{- else -}}selfSigned{{- end -}}
{{- else -}}
{{- $m -}}
{{- end -}}
{{- end -}}

{{- define "prescale.adapterTLSSecret" -}}
{{- if eq (include "prescale.adapterTLSMode" .) "secret" -}}
{{- .Values.adapter.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "prescale.component" (dict "root" . "component" "adapter")) -}}
{{- end -}}
{{- end -}}
