{{/* Chart name, truncated to the 63 characters Kubernetes names allow. */}}
{{- define "blindfold.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: the release name, plus the chart name unless the release already contains it. */}}
{{- define "blindfold.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "blindfold.labels" -}}
app.kubernetes.io/name: {{ include "blindfold.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "blindfold.selectorLabels" -}}
app.kubernetes.io/name: {{ include "blindfold.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end -}}

{{- define "blindfold.xdsSelectorLabels" -}}
app.kubernetes.io/name: {{ include "blindfold.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: xds
{{- end -}}

{{- define "blindfold.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "blindfold.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "blindfold.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The proxy's key flags: the KEK, the shared key store in Vault KV version 2 and the Vault connection both use. Fails the
render for settings the proxy would refuse, or that would give replicas keys of their own.
*/}}
{{- define "blindfold.keyArgs" -}}
{{- $k := .Values.keys -}}
{{- if hasKey $k "keysetsSecret" -}}
{{- fail "keys.keysetsSecret is gone: the replicas share a Vault KV key store now (keys.store); copy the keysets there with blindfold keys (docs/key-store.md, Moving from a key directory)" -}}
{{- end -}}
{{- if ne $k.store.kind "vault-kv" -}}
{{- fail (printf "keys.store.kind %q: the chart supports vault-kv only (a pod's own key directory would give each replica keys of its own)" $k.store.kind) -}}
{{- end -}}
{{- if not (has $k.kek (list "local" "vault")) -}}
{{- fail (printf "keys.kek %q: want local or vault" $k.kek) -}}
{{- end -}}
{{- if not (has $k.vault.auth (list "kubernetes" "approle" "token")) -}}
{{- fail (printf "keys.vault.auth %q: want kubernetes, approle or token" $k.vault.auth) -}}
{{- end -}}
- --key-dir=/var/lib/blindfold/keys
- --kek={{ $k.kek }}
- --key-store=vault-kv
- --vault-kv-mount={{ required "keys.store.vaultKV.mount is required" $k.store.vaultKV.mount }}
- --vault-kv-path={{ required "keys.store.vaultKV.path is required" $k.store.vaultKV.path }}
- --vault-addr={{ required "keys.vault.address is required" $k.vault.address }}
{{- if eq $k.kek "vault" }}
- --vault-mount={{ $k.vault.mount }}
- --vault-key-prefix={{ $k.vault.keyPrefix }}
{{- end }}
- --vault-auth={{ $k.vault.auth }}
{{- if eq $k.vault.auth "kubernetes" }}
- --vault-k8s-role={{ required "keys.vault.role is required with keys.vault.auth=kubernetes" $k.vault.role }}
- --vault-k8s-jwt=/var/run/secrets/tokens/vault/token
{{- else if eq $k.vault.auth "approle" }}
- --vault-role-id={{ required "keys.vault.appRole.roleId is required with keys.vault.auth=approle" $k.vault.appRole.roleId }}
- --vault-secret-id-file=/etc/blindfold/vault-approle/secret-id
{{- end }}
{{- with $k.vault.authMount }}
- --vault-auth-mount={{ . }}
{{- end }}
{{- if $k.vault.caSecret }}
- --vault-cacert=/etc/blindfold/vault/ca.crt
{{- end }}
{{- with $k.rotateEvery }}
- --rotate-keys-every={{ . }}
{{- end }}
{{- if $k.createKeys }}
- --create-keys
{{- end }}
{{- with $k.cache.ttl }}
- --key-cache-ttl={{ . }}
{{- end }}
{{- with $k.cache.refreshAfter }}
- --key-refresh-after={{ . }}
{{- end }}
{{- end -}}
