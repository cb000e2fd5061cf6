{{/*
Shared definitions. Every kind has one template that ranges over the four services; what differs
between services (ports, who may call whom, the gRPC service name) is data, defined here once.
*/}}

{{/* The chart name, for app.kubernetes.io/name. */}}
{{- define "samhandling.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every resource name: the release name, with the chart name unless it already has it. */}}
{{- define "samhandling.fullname" -}}
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

{{/* A component's resource name: (dict "root" $ "component" "access") */}}
{{- define "samhandling.componentName" -}}
{{- printf "%s-%s" (include "samhandling.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "samhandling.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Standard labels of a component: (dict "root" $ "component" "access") */}}
{{- define "samhandling.labels" -}}
{{ include "samhandling.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: samhandling
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "samhandling.chart" .root }}
{{- end -}}

{{/* Selector labels: name + instance, and the component (four Deployments share name and instance). */}}
{{- define "samhandling.selectorLabels" -}}
app.kubernetes.io/name: {{ include "samhandling.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The fully qualified gRPC service of each component, as registered with the health service. */}}
{{- define "samhandling.grpcServices" -}}
access: samhandling.access.v1.AccessService
overview: samhandling.overview.v1.OverviewService
news2: samhandling.news2.v1.News2Service
storage: samhandling.storage.v1.StorageService
{{- end -}}

{{/* Who calls whom inside the release: overview and news2 call access; all three call storage. */}}
{{- define "samhandling.callers" -}}
access: [overview, news2]
overview: []
news2: []
storage: [access, overview, news2]
{{- end -}}

{{/* The services vendors (EHR systems) call; storage is internal. */}}
{{- define "samhandling.vendorFacing" -}}
[access, overview, news2]
{{- end -}}

{{/* Where peers reach a component: (dict "root" $ "component" "access") */}}
{{- define "samhandling.address" -}}
{{- $service := get .root.Values.services .component -}}
{{- printf "%s.%s.svc:%d" (include "samhandling.componentName" .) .root.Release.Namespace (int $service.port) -}}
{{- end -}}

{{- define "samhandling.image" -}}
{{- $image := .Values.image -}}
{{- $reference := printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- if $image.digest -}}
{{- $reference = printf "%s@%s" $reference $image.digest -}}
{{- end -}}
{{- $reference -}}
{{- end -}}

{{/* The database URL Secret: an existing one, never a password in values. */}}
{{- define "samhandling.databaseSecretName" -}}
{{- required "database.existingSecret: name the Secret that holds the database URL" .Values.database.existingSecret -}}
{{- end -}}

{{- define "samhandling.cnpgClusterName" -}}
{{- default (printf "%s-postgres" (include "samhandling.fullname" .)) .Values.cloudnativepg.clusterName | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* Refuses combinations the services would reject at start-up, at install time instead. */}}
{{- define "samhandling.validate" -}}
{{- $auth := .Values.auth -}}
{{- if and $auth.jwksUrl $auth.jwksConfigMap.name -}}
{{- fail "auth: set either jwksUrl or jwksConfigMap.name, not both" -}}
{{- end -}}
{{- if not (or $auth.jwksUrl $auth.jwksConfigMap.name) -}}
{{- fail "auth: set jwksUrl or jwksConfigMap.name; without one every pod would trust only keys of its own" -}}
{{- end -}}
{{- if gt (len (include "samhandling.fullname" .)) 52 -}}
{{- fail "the release name is too long: resource names (release + component) must stay within 63 characters" -}}
{{- end -}}
{{- if eq .Values.config.environment "production" -}}
{{- if not (hasPrefix "https://" $auth.jwksUrl) -}}
{{- fail "auth.jwksUrl: production needs an https:// JWKS URL (HelseID's)" -}}
{{- end -}}
{{- if or (not $auth.issuer) (not $auth.audience) -}}
{{- fail "auth.issuer and auth.audience are required in production" -}}
{{- end -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- range $name, $service := .Values.services -}}
{{- if not $service.tlsSecret -}}
{{- fail (printf "services.%s.tlsSecret: name the kubernetes.io/tls Secret (tls.enabled is true)" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The tenant table as SAMHANDLING_TENANTS expects it: 1804=972418013,3201=935478715 */}}
{{- define "samhandling.tenants" -}}
{{- $pairs := list -}}
{{- range .Values.tenants -}}
{{- $pairs = append $pairs (printf "%s=%s" .municipality .organisation) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/*
The environment every samhandling process reads (services and the migration Job):
(dict "root" $ "component" "access" "serviceName" "samhandling-access")
*/}}
{{- define "samhandling.env" -}}
{{- $root := .root -}}
{{- $values := $root.Values -}}
{{- $config := $values.config -}}
- name: SAMHANDLING_ENVIRONMENT
  value: {{ $config.environment | quote }}
- name: SAMHANDLING_LOG_LEVEL
  value: {{ $config.logLevel | quote }}
- name: SAMHANDLING_DATA_DIR
  value: /tmp/samhandling
- name: SAMHANDLING_BIND_HOST
  value: "::"
{{- /* Only the processes that own tables get the database credentials. */}}
{{- if has .component (list "access" "storage" "migrations") }}
- name: SAMHANDLING_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "samhandling.databaseSecretName" $root }}
      key: {{ $values.database.urlKey }}
- name: SAMHANDLING_DATABASE_POOL_SIZE
  value: {{ $values.database.poolSize | int64 | quote }}
{{- end }}
{{- if $values.auth.jwksUrl }}
- name: SAMHANDLING_JWKS
  value: {{ $values.auth.jwksUrl | quote }}
{{- else if $values.auth.jwksConfigMap.name }}
- name: SAMHANDLING_JWKS
  value: {{ printf "/etc/samhandling/jwks/%s" $values.auth.jwksConfigMap.key | quote }}
{{- end }}
{{- if $values.auth.issuer }}
- name: SAMHANDLING_TOKEN_ISSUER
  value: {{ $values.auth.issuer | quote }}
{{- end }}
{{- if $values.auth.audience }}
- name: SAMHANDLING_TOKEN_AUDIENCE
  value: {{ $values.auth.audience | quote }}
{{- end }}
- name: SAMHANDLING_TENANTS
  value: {{ include "samhandling.tenants" $root | quote }}
- name: SAMHANDLING_MAX_PAYLOAD_BYTES
  value: {{ $config.maxPayloadBytes | int64 | quote }}
- name: SAMHANDLING_CALL_TIMEOUT_SECONDS
  value: {{ $config.callTimeoutSeconds | toString | quote }}
- name: SAMHANDLING_SHUTDOWN_GRACE_SECONDS
  value: {{ $config.shutdownGraceSeconds | toString | quote }}
- name: SAMHANDLING_DATABASE_CHECK_INTERVAL_SECONDS
  value: {{ $config.databaseCheckIntervalSeconds | toString | quote }}
- name: SAMHANDLING_MAX_SERVICES_PER_SUBMISSION
  value: {{ $config.maxServicesPerSubmission | int64 | quote }}
- name: SAMHANDLING_MAX_CONCURRENT_STREAMS
  value: {{ $config.maxConcurrentStreams | int64 | quote }}
- name: SAMHANDLING_MAX_CALL_SECONDS
  value: {{ $config.maxCallSeconds | toString | quote }}
- name: SAMHANDLING_RATE_LIMIT_PER_SECOND
  value: {{ $config.rateLimitPerSecond | toString | quote }}
- name: SAMHANDLING_RATE_LIMIT_BURST
  value: {{ $config.rateLimitBurst | int64 | quote }}
- name: SAMHANDLING_MAX_STREAMS_PER_CLIENT
  value: {{ $config.maxStreamsPerClient | int64 | quote }}
{{- range $peer, $peerService := $values.services }}
- name: SAMHANDLING_{{ upper $peer }}_PORT
  value: {{ $peerService.port | int64 | quote }}
- name: SAMHANDLING_{{ upper $peer }}_ADDRESS
  value: {{ include "samhandling.address" (dict "root" $root "component" $peer) | quote }}
{{- end }}
{{- include "samhandling.telemetryEnv" . }}
{{- range $values.extraEnv }}
- name: {{ .name }}
  value: {{ .value | quote }}
{{- end }}
{{- end -}}

{{/* OpenTelemetry: the standard OTEL_* variables; the pod's identity comes from the downward API. */}}
{{- define "samhandling.telemetryEnv" -}}
{{- $root := .root -}}
{{- $telemetry := $root.Values.telemetry -}}
{{- $attributes := list
  (printf "service.namespace=%s" $telemetry.serviceNamespace)
  (printf "service.version=%s" $root.Chart.AppVersion)
  (printf "deployment.environment.name=%s" $root.Values.config.environment)
  (printf "k8s.namespace.name=%s" $root.Release.Namespace)
  "k8s.pod.name=$(K8S_POD_NAME)"
  "k8s.pod.uid=$(K8S_POD_UID)"
  "k8s.node.name=$(K8S_NODE_NAME)"
  "service.instance.id=$(K8S_POD_UID)"
  (printf "helm.release.name=%s" $root.Release.Name)
-}}
{{- range $key, $value := $telemetry.resourceAttributes }}
{{- $attributes = append $attributes (printf "%s=%s" $key $value) -}}
{{- end }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_POD_UID
  valueFrom:
    fieldRef:
      fieldPath: metadata.uid
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_SERVICE_NAME
  value: {{ .serviceName | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attributes | quote }}
{{- if $telemetry.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $telemetry.otlpEndpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $telemetry.otlpProtocol | quote }}
{{- if $telemetry.otlpHeadersSecret.name }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ $telemetry.otlpHeadersSecret.name }}
      key: {{ $telemetry.otlpHeadersSecret.key }}
{{- end }}
{{- end }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $telemetry.sampler | quote }}
{{- if hasSuffix "traceidratio" $telemetry.sampler }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $telemetry.samplerArg | toString | quote }}
{{- end }}
- name: OTEL_METRIC_EXPORT_INTERVAL
  value: {{ $telemetry.metricExportIntervalMillis | int64 | quote }}
{{- end -}}

{{/* Hardened pod security context (shared by the services and the migration Job). */}}
{{- define "samhandling.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser | int64 }}
runAsGroup: {{ .Values.securityContext.runAsGroup | int64 }}
fsGroup: {{ .Values.securityContext.runAsGroup | int64 }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "samhandling.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Volumes every samhandling pod mounts: a writable /tmp; the JWKS ConfigMap and TLS material when set. */}}
{{- define "samhandling.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpSizeLimit }}
{{- with .root.Values.auth.jwksConfigMap }}
{{- if .name }}
- name: jwks
  configMap:
    name: {{ .name }}
    items:
      - key: {{ .key }}
        path: {{ .key }}
{{- end }}
{{- end }}
{{- if and .root.Values.tls.enabled .service }}
- name: tls
  secret:
    secretName: {{ .service.tlsSecret }}
{{- if .root.Values.tls.clientCaSecret }}
- name: client-ca
  secret:
    secretName: {{ .root.Values.tls.clientCaSecret }}
    items:
      - key: {{ .root.Values.tls.clientCaKey }}
        path: ca.crt
{{- end }}
{{- end }}
{{- end -}}

{{- define "samhandling.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .root.Values.auth.jwksConfigMap.name }}
- name: jwks
  mountPath: /etc/samhandling/jwks
  readOnly: true
{{- end }}
{{- if and .root.Values.tls.enabled .service }}
- name: tls
  mountPath: /etc/samhandling/tls
  readOnly: true
{{- if .root.Values.tls.clientCaSecret }}
- name: client-ca
  mountPath: /etc/samhandling/client-ca
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/* Scheduling shared by the Deployments. */}}
{{- define "samhandling.scheduling" -}}
{{- with .root.Values.scheduling.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.scheduling.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .root.Values.scheduling.spreadAcrossNodes }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "samhandling.selectorLabels" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "samhandling.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end -}}
