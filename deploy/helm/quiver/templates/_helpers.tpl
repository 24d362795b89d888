{{/* Names, labels and the values every template derives from. */}}

{{- define "quiver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release's full name. Pod names add "-<ordinal>" and the headless
Service "-headless", so it stays short enough for both to be DNS labels.
*/}}
{{- define "quiver.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains (include "quiver.name" .) .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "quiver.name" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "quiver.headless" -}}
{{- printf "%s-headless" (include "quiver.fullname" .) -}}
{{- end -}}

{{- define "quiver.selectorLabels" -}}
app.kubernetes.io/name: {{ include "quiver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "quiver.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "quiver.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "quiver.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "quiver.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "quiver.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "quiver.authSecret" -}}
{{- default (printf "%s-auth" (include "quiver.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "quiver.s3Secret" -}}
{{- if .Values.s3.existingSecret -}}
{{- .Values.s3.existingSecret -}}
{{- else if .Values.s3.accessKeyId -}}
{{- printf "%s-s3" (include "quiver.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "quiver.scheme" -}}
{{- if .Values.tls.enabled -}}grpc+tls{{- else -}}grpc{{- end -}}
{{- end -}}

{{/* The Flight URL of pod number .ordinal: what it advertises to clients and peers. */}}
{{- define "quiver.nodeUrl" -}}
{{- $root := .root -}}
{{- printf "%s://%s-%d.%s.%s.svc.%s:%d" (include "quiver.scheme" $root) (include "quiver.fullname" $root) (int .ordinal) (include "quiver.headless" $root) $root.Release.Namespace $root.Values.clusterDomain (int $root.Values.ports.flight) -}}
{{- end -}}

{{/* ID=URL of every node, comma-separated: the init Job's QUIVER_INIT_NODES. */}}
{{- define "quiver.initNodes" -}}
{{- $root := . -}}
{{- $nodes := list -}}
{{- range $i := until (int .Values.replicaCount) -}}
{{- $nodes = append $nodes (printf "%s-%d=%s" (include "quiver.fullname" $root) $i (include "quiver.nodeUrl" (dict "root" $root "ordinal" $i))) -}}
{{- end -}}
{{- join "," $nodes -}}
{{- end -}}

{{/*
The topology document's URL: topology.url, or a key beside the first
source's data in its bucket. A local path would not be shared by the pods.
*/}}
{{- define "quiver.topologyUrl" -}}
{{- if .Values.topology.url -}}
{{- .Values.topology.url -}}
{{- else -}}
{{- $first := index .Values.sources 0 -}}
{{- $bucket := regexFind "^s3://[^/]+" $first.url -}}
{{- if not $bucket -}}
{{- fail (printf "topology.url is empty and the first source (%s) is not in S3: set topology.url to an s3:// key every node can read and write" $first.url) -}}
{{- end -}}
{{- printf "%s/.quiver/%s/topology.json" $bucket (include "quiver.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Container memory in MiB: the cache tiers held in memory plus the headroom. */}}
{{- define "quiver.memoryMiB" -}}
{{- add (int .Values.cache.memoryMiB) (int .Values.cache.hotMiB) (int .Values.cache.metadataMiB) (int .Values.resources.memoryHeadroomMiB) -}}
{{- end -}}

{{/* The disk tier's volume claim in MiB: the tier plus 5 %, at least 256 MiB, for its catalog, lock and probe files. */}}
{{- define "quiver.volumeMiB" -}}
{{- $disk := int .Values.cache.diskMiB -}}
{{- add $disk (max 256 (div $disk 20)) -}}
{{- end -}}

{{/* A TOML value: TOML's basic strings, integers and booleans are written as in JSON. */}}
{{- define "quiver.toml" -}}
{{- toJson . -}}
{{- end -}}

{{/* Settings that would produce a node that refuses to start, refused at render time instead. */}}
{{- define "quiver.validate" -}}
{{- if and (not .Values.auth.enabled) (not .Values.insecure) -}}
{{- fail "auth.enabled=false leaves the nodes without tokens, and a node refuses to listen beyond loopback without them: keep auth on, or set insecure=true on a network only trusted clients reach" -}}
{{- end -}}
{{- if and .Values.insecure .Values.auth.enabled -}}
{{- fail "insecure=true only applies with auth.enabled=false" -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.enabled needs tls.secretName: a Secret with tls.crt, tls.key and ca.crt" -}}
{{- end -}}
{{- if and .Values.s3.existingSecret .Values.s3.accessKeyId -}}
{{- fail "set s3.existingSecret or s3.accessKeyId, not both" -}}
{{- end -}}
{{- if ne (empty .Values.s3.accessKeyId) (empty .Values.s3.secretAccessKey) -}}
{{- fail "s3.accessKeyId and s3.secretAccessKey go together" -}}
{{- end -}}
{{- end -}}
