{{/* Names and labels shared by every object. */}}

{{- define "ringlane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "ringlane.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ringlane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ringlane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ringlane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "ringlane.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ringlane
{{- end -}}

{{/* Selector of the agent pods, as a label selector string (the uninstall hook's). */}}
{{- define "ringlane.agentSelector" -}}
app.kubernetes.io/name={{ include "ringlane.name" . }},app.kubernetes.io/instance={{ .Release.Name }},app.kubernetes.io/component=agent
{{- end -}}

{{/* Selector of the uninstall marker: the pre-delete hook's own pod. */}}
{{- define "ringlane.uninstallSelector" -}}
app.kubernetes.io/name={{ include "ringlane.name" . }},app.kubernetes.io/instance={{ .Release.Name }},app.kubernetes.io/component=uninstall
{{- end -}}

{{- define "ringlane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ringlane.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ringlane.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The plugin's network configuration fields, as cni_install flags. */}}
{{- define "ringlane.cniFlags" -}}
- --cni-bin-dir={{ .Values.cni.binDir }}
- --cni-conf-dir={{ .Values.cni.confDir }}
- --agent-socket={{ .Values.agent.config.runDir }}/agent.sock
- --state-dir={{ .Values.agent.config.cniStateDir }}
- --timeout-ms={{ .Values.cni.timeoutMs }}
{{- if .Values.cni.failClosed }}
- --fail-closed
{{- end }}
{{- with .Values.cni.chainTarget }}
- --chain-target={{ . }}
{{- end }}
{{- with .Values.cni.hostPython }}
- --python={{ . }}
{{- end }}
{{- end -}}

{{/* Where the agent container sees api.tls.secretName's Secret. */}}
{{- define "ringlane.tlsDir" -}}/etc/ringlane/tls{{- end -}}

{{/* The agent's configuration file: agent.config, with the API's TLS paths defaulted to the
     files of api.tls.secretName's Secret when it is set. */}}
{{- define "ringlane.agentConfig" -}}
{{- $c := deepCopy .Values.agent.config -}}
{{- if .Values.api.tls.secretName -}}
{{- range $key, $file := dict "apiTlsCert" "tls.crt" "apiTlsKey" "tls.key" "apiTlsCa" "ca.crt" -}}
{{- if not (get $c $key) -}}
{{- $_ := set $c $key (printf "%s/%s" (include "ringlane.tlsDir" $) $file) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* The TCP port of agent.config.apiListen (host:port), or 0 when it is empty. */}}
{{- define "ringlane.apiPort" -}}
{{- if .Values.agent.config.apiListen -}}
{{- regexReplaceAll "^.*:" .Values.agent.config.apiListen "" | int -}}
{{- else -}}
0
{{- end -}}
{{- end -}}

{{/* Checks the schema cannot express (relations between keys). */}}
{{- define "ringlane.validate" -}}
{{- $c := .Values.agent.config -}}
{{- if lt (int $c.frames) (mul 2 (int $c.ringSize)) -}}
{{- fail (printf "agent.config.frames (%v) must be at least 2 x agent.config.ringSize (%v)" $c.frames $c.ringSize) -}}
{{- end -}}
{{- if and $c.hugepages (not (hasKey (default dict .Values.agent.resources.limits) "hugepages-2Mi")) (not (hasKey (default dict .Values.agent.resources.limits) "hugepages-1Gi")) -}}
{{- fail "agent.config.hugepages needs agent.resources.limits to include hugepages-2Mi (or hugepages-1Gi): without it the kubelet's hugetlb limit of 0 kills the agent at its first UMEM page" -}}
{{- end -}}
{{- end -}}
