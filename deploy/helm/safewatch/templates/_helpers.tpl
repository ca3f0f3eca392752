{{- define "safewatch.name" -}}{{ .Release.Name }}-safewatch{{- end -}}

{{- define "safewatch.labels" -}}
app.kubernetes.io/name: safewatch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "safewatch.env" -}}
envFrom:
  - secretRef:
      name: {{ .Values.envSecret }}
env:
  - name: SAFEWATCH_MODELS
    value: /var/cache/safewatch/models
  - name: POD_IP  # cluster.advertise_host: where API nodes reach an analyzer's live video
    valueFrom:
      fieldRef: {fieldPath: status.podIP}
  {{- if .Values.otlpEndpoint }}
  - name: OTEL_EXPORTER_OTLP_ENDPOINT
    value: {{ .Values.otlpEndpoint | quote }}
  {{- end }}
{{- end -}}

{{/* The site ConfigMap's data: the chart's ConfigMap and the migration hook's copy. */}}
{{- define "safewatch.siteData" -}}
site.yaml: |
  {{- .Values.site | nindent 2 }}
{{- end -}}

{{- define "safewatch.configVolumes" -}}
- name: site
  configMap:
    name: {{ include "safewatch.name" . }}-site
- name: rules
  configMap:
    name: {{ include "safewatch.name" . }}-rules
- name: models
  emptyDir: {}
{{- /* evidence_dir (the clip spool, the reveal log) and the audit jobs: kept across container
restarts, so a restarted analyzer stores the clips it left unfinished (start-up recovery). */}}
- name: state
  emptyDir: {}
{{- end -}}

{{- define "safewatch.configMounts" -}}
- name: site
  mountPath: /etc/safewatch/site.yaml
  subPath: site.yaml
- name: rules
  mountPath: /etc/safewatch/rules
- name: models
  mountPath: /var/cache/safewatch/models
- name: state
  mountPath: /var/lib/safewatch
{{- end -}}
