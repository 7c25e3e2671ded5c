package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

var update = flag.Bool("update", false, "regenerate deploy/k8s/blindfold.yaml from the chart")

const (
	chartDir    = "helm/blindfold"
	releaseName = "blindfold"
	namespace   = "blindfold"
	// kubeVersion is the cluster version the chart is rendered for (.Capabilities.KubeVersion, checked against the
	// chart's kubeVersion as `helm template` does): the release whose types k8s.io/api v0.37 decodes.
	kubeVersion = "v1.37.0"
)

// strictCodecs decodes manifests into the typed objects of k8s.io/api, registered in client-go's scheme, and
// rejects what the API server's strict field validation rejects: unknown (misspelled, misplaced) fields and
// duplicate keys. Values of the wrong type and unknown apiVersion/kind fail any decode.
var strictCodecs = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict)

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// render renders the chart with Helm's own engine the way `helm template --namespace blindfold blindfold <chart>
// -f values` does: values coalesced over the chart's values.yaml, release and capabilities as for an install, the
// chart's kubeVersion checked, and the output split and ordered by releaseutil (install order, `# Source:` names).
func render(ch *chart.Chart, values map[string]any) ([]releaseutil.Manifest, error) {
	caps := chartutil.DefaultCapabilities.Copy()
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		return nil, err
	}
	caps.KubeVersion = *kv
	if ch.Metadata.KubeVersion != "" && !chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", ch.Metadata.KubeVersion, caps.KubeVersion.String())
	}
	opts := chartutil.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	vals, err := chartutil.ToRenderValues(ch, values, opts, caps)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, err
	}
	hooks, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, err
	}
	if len(hooks) > 0 {
		return nil, fmt.Errorf("the chart renders %d hooks; the plain manifests in deploy/k8s cannot express them", len(hooks))
	}
	return manifests, nil
}

func renderChart(t *testing.T, ch *chart.Chart, values map[string]any) []releaseutil.Manifest {
	t.Helper()
	manifests, err := render(ch, values)
	if err != nil {
		t.Fatal(err)
	}
	return manifests
}

// decode decodes one YAML document strictly into its Kubernetes type (by apiVersion and kind) and checks that it
// names itself.
func decode(doc string) (runtime.Object, error) {
	obj, gvk, err := strictCodecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
	if err != nil {
		return nil, err
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", gvk, err)
	}
	if m.GetName() == "" {
		return nil, fmt.Errorf("%s has no metadata.name", gvk.Kind)
	}
	return obj, nil
}

// objects decodes every document strictly and returns them by "Kind/name"; source names the documents in errors.
func objects(t *testing.T, source string, docs []string) map[string]runtime.Object {
	t.Helper()
	out := map[string]runtime.Object{}
	for i, doc := range docs {
		obj, err := decode(doc)
		if err != nil {
			t.Errorf("%s document %d is not a valid Kubernetes object: %v\n%s", source, i, err, doc)
			continue
		}
		m, _ := meta.Accessor(obj)
		key := obj.GetObjectKind().GroupVersionKind().Kind + "/" + m.GetName()
		if strings.Contains(doc, "=\n") || strings.Contains(doc, "<no value>") {
			t.Errorf("%s: %s has an empty value:\n%s", source, key, doc)
		}
		if out[key] != nil {
			t.Errorf("%s: %s rendered twice", source, key)
		}
		out[key] = obj
	}
	return out
}

func contents(manifests []releaseutil.Manifest) []string {
	docs := make([]string, len(manifests))
	for i, m := range manifests {
		docs[i] = m.Content
	}
	return docs
}

// splitYAML splits a multi-document YAML stream as kubectl does, dropping documents that hold only comments.
func splitYAML(t *testing.T, stream []byte) []string {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var docs []string
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(stripComments(string(doc))) != "" {
			docs = append(docs, string(doc))
		}
	}
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func readValues(t *testing.T, path string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValuesFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestHelmChartRenders(t *testing.T) {
	ch := loadChart(t)
	scenarios := map[string]map[string]any{
		"defaults": {},
		"vault, xds and envoy egress": {
			"keys":        map[string]any{"kek": "vault", "vault": map[string]any{"cidrs": []any{"10.20.0.0/16"}, "caSecret": "vault-ca"}},
			"xds":         map[string]any{"enabled": true},
			"envoyEgress": map[string]any{"enabled": true, "config": "static_resources: {}\n"},
			"backend":     map[string]any{"cidrs": []any{"203.0.113.0/24"}, "tls": map[string]any{"secretName": "upstream-mtls"}},
		},
		"cloud api key, no autoscaling, plaintext inbound": {
			"backend":       map[string]any{"address": "my-ns.a1b2c.tmprl.cloud:7233", "apiKeySecret": "temporal-api-key"},
			"autoscaling":   map[string]any{"enabled": false},
			"proxy":         map[string]any{"tls": map[string]any{"enabled": false}},
			"codecEndpoint": map[string]any{"ingress": map[string]any{"enabled": false}},
		},
	}
	for name, over := range scenarios {
		t.Run(name, func(t *testing.T) {
			objs := objects(t, name, contents(renderChart(t, ch, over)))
			for _, want := range []string{"Deployment/blindfold", "Service/blindfold", "Service/blindfold-headless", "NetworkPolicy/blindfold",
				"ConfigMap/blindfold-policy", "Secret/blindfold-kek", "PodDisruptionBudget/blindfold", "ServiceAccount/blindfold"} {
				if objs[want] == nil {
					t.Errorf("%s not rendered; got %v", want, slices.Sorted(maps.Keys(objs)))
				}
			}
			if t.Failed() {
				t.FailNow()
			}
			dep := objs["Deployment/blindfold"].(*appsv1.Deployment)
			sel := dep.Spec.Selector.MatchLabels
			labels := dep.Spec.Template.Labels
			for k, v := range sel {
				if labels[k] != v {
					t.Errorf("deployment selector %s=%v does not match its pod labels %v", k, v, labels)
				}
			}
			svc := objs["Service/blindfold"].(*corev1.Service)
			if !maps.Equal(svc.Spec.Selector, sel) {
				t.Errorf("service selector %v differs from the deployment's %v", svc.Spec.Selector, sel)
			}
			// Every named target port of the Service is a port of the proxy container.
			proxy := dep.Spec.Template.Spec.Containers[0]
			for _, p := range svc.Spec.Ports {
				if name := p.TargetPort.StrVal; name != "" && !slices.ContainsFunc(proxy.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == name }) {
					t.Errorf("service port %s targets %q, which container %s does not declare", p.Name, name, proxy.Name)
				}
			}
			// Egress: only the backend, Vault (the key store, and Transit), the xDS server (when used) and DNS.
			egress := objs["NetworkPolicy/blindfold"].(*networkingv1.NetworkPolicy).Spec.Egress
			wantEgress := 3
			if over["xds"] != nil {
				wantEgress++
				if objs["Deployment/blindfold-xds"] == nil || objs["Service/blindfold-xds"] == nil {
					t.Error("xds enabled but its Deployment or Service is missing")
				}
			}
			if len(egress) != wantEgress {
				t.Errorf("network policy has %d egress rules, want %d", len(egress), wantEgress)
			}
			if over["envoyEgress"] != nil && !slices.Contains(proxy.Args, "--upstream=127.0.0.1:7234") {
				t.Errorf("with envoy egress the proxy must dial envoy on loopback: %s", proxy.Args)
			}
		})
	}

	// The proxy and the codec endpoint refuse listeners beyond loopback that do not authenticate callers or (the
	// endpoint) lack TLS; the chart passes the escape hatches only where it says why, and fails the render otherwise.
	t.Run("listener rules", func(t *testing.T) {
		args := func(over map[string]any) []string {
			t.Helper()
			objs := objects(t, "listener rules", contents(renderChart(t, ch, over)))
			return objs["Deployment/blindfold"].(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Args
		}
		if a := args(map[string]any{}); !slices.Contains(a, "--client-ca=/etc/blindfold/tls/ca.crt") || slices.Contains(a, "--insecure-listen") ||
			!slices.Contains(a, "--codec-insecure-listen") {
			t.Errorf("defaults: mutual TLS on the proxy, plain HTTP behind the Ingress stated: %s", a)
		}
		a := args(map[string]any{"codecEndpoint": map[string]any{"tls": map[string]any{"secretName": "codec-tls"}}})
		if !slices.Contains(a, "--codec-tls-cert=/etc/blindfold/codec-tls/tls.crt") || slices.Contains(a, "--codec-insecure-listen") {
			t.Errorf("codecEndpoint.tls.secretName: the endpoint serves HTTPS: %s", a)
		}
		noClientCert := map[string]any{"tls": map[string]any{"requireClientCert": false}}
		if _, err := render(ch, map[string]any{"proxy": noClientCert}); err == nil || !strings.Contains(err.Error(), "--insecure-listen") {
			t.Errorf("TLS without client certificates rendered (%v); the proxy would refuse to start", err)
		}
		if a := args(map[string]any{"proxy": map[string]any{"auth": map[string]any{"clientCerts": true}}}); !slices.Contains(a, "--auth-client-certs") ||
			!slices.Contains(a, "--policy=/etc/blindfold/policy/policy.yaml") {
			t.Errorf("proxy.auth.clientCerts: the proxy authorizes callers by certificate under the policy: %s", a)
		}
		if _, err := render(ch, map[string]any{"proxy": map[string]any{"auth": map[string]any{"clientCerts": true}, "tls": map[string]any{"requireClientCert": false}, "extraArgs": []any{"--insecure-listen"}}}); err == nil ||
			!strings.Contains(err.Error(), "proxy.auth.clientCerts needs") {
			t.Errorf("clientCerts without required client certificates rendered (%v)", err)
		}
		noClientCert["extraArgs"] = []any{"--insecure-listen"}
		if a := args(map[string]any{"proxy": noClientCert}); !slices.Contains(a, "--insecure-listen") {
			t.Errorf("TLS without client certificates, --insecure-listen in extraArgs: %s", a)
		}
	})

	// The replicas share one Vault KV key store: no keysets mounted into pods, every replica on the same folder, the Vault
	// auth the values name, and renders that would give replicas keys of their own fail.
	t.Run("shared key store", func(t *testing.T) {
		pod := func(over map[string]any) corev1.PodSpec {
			t.Helper()
			objs := objects(t, "shared key store", contents(renderChart(t, ch, over)))
			return objs["Deployment/blindfold"].(*appsv1.Deployment).Spec.Template.Spec
		}
		has := func(args []string, want ...string) {
			t.Helper()
			for _, w := range want {
				if !slices.Contains(args, w) {
					t.Errorf("args lack %s: %s", w, args)
				}
			}
		}
		spec := pod(map[string]any{})
		args := spec.Containers[0].Args
		has(args, "--kek=local", "--key-store=vault-kv", "--vault-kv-mount=secret", "--vault-kv-path=blindfold/scopes",
			"--vault-addr=https://vault.vault.svc:8200", "--vault-auth=kubernetes", "--vault-k8s-role=blindfold", "--vault-k8s-jwt=/var/run/secrets/tokens/vault/token")
		for _, a := range args {
			if strings.HasPrefix(a, "--rotate-keys-every") || strings.HasPrefix(a, "--key-cache-ttl") || strings.HasPrefix(a, "--vault-mount") {
				t.Errorf("defaults pass %s", a)
			}
		}
		for _, v := range spec.Volumes {
			if v.Secret != nil && strings.Contains(v.Secret.SecretName, "keyset") {
				t.Errorf("a keyset Secret is mounted: %+v", v)
			}
		}
		for _, m := range spec.Containers[0].VolumeMounts {
			if strings.HasPrefix(m.MountPath, "/var/lib/blindfold/keys/") {
				t.Errorf("something is mounted into the key directory: %+v", m)
			}
		}
		if !slices.ContainsFunc(spec.Containers[0].Env, func(e corev1.EnvVar) bool { return e.Name == "BLINDFOLD_MASTER_KEY" }) {
			t.Error("kek local without BLINDFOLD_MASTER_KEY")
		}

		spec = pod(map[string]any{"keys": map[string]any{
			"kek": "vault", "rotateEvery": "720h", "createKeys": true,
			"cache": map[string]any{"ttl": "10m", "refreshAfter": "30s"},
			"store": map[string]any{"vaultKV": map[string]any{"mount": "kv", "path": "prod/blindfold"}},
			"vault": map[string]any{"auth": "approle", "authMount": "approle-blindfold", "appRole": map[string]any{"roleId": "r-1", "secretIdSecret": "blindfold-approle"}},
		}})
		args = spec.Containers[0].Args
		has(args, "--kek=vault", "--vault-mount=transit", "--vault-key-prefix=blindfold-", "--vault-kv-mount=kv", "--vault-kv-path=prod/blindfold",
			"--rotate-keys-every=720h", "--create-keys", "--key-cache-ttl=10m", "--key-refresh-after=30s",
			"--vault-auth=approle", "--vault-role-id=r-1", "--vault-secret-id-file=/etc/blindfold/vault-approle/secret-id", "--vault-auth-mount=approle-blindfold")
		if !slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == "blindfold-approle" }) {
			t.Errorf("approle secret_id Secret not mounted: %+v", spec.Volumes)
		}
		if slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == "vault-token" }) || len(spec.Containers[0].Env) != 0 {
			t.Errorf("approle with kek vault: no projected token, no env: %+v %+v", spec.Volumes, spec.Containers[0].Env)
		}

		spec = pod(map[string]any{"keys": map[string]any{"vault": map[string]any{"auth": "token", "tokenSecret": "blindfold-vault-token"}}})
		if !slices.ContainsFunc(spec.Containers[0].Env, func(e corev1.EnvVar) bool {
			return e.Name == "VAULT_TOKEN" && e.ValueFrom.SecretKeyRef.Name == "blindfold-vault-token" && e.ValueFrom.SecretKeyRef.Key == "token"
		}) {
			t.Errorf("auth token: VAULT_TOKEN from the Secret: %+v", spec.Containers[0].Env)
		}

		for name, tc := range map[string]struct {
			keys map[string]any
			want string
		}{
			"old keyset secret":  {map[string]any{"keysetsSecret": "blindfold-keysets"}, "keys.keysetsSecret is gone"},
			"directory store":    {map[string]any{"store": map[string]any{"kind": "dir"}}, "supports vault-kv only"},
			"unknown kek":        {map[string]any{"kek": "hsm"}, `keys.kek "hsm"`},
			"unknown auth":       {map[string]any{"vault": map[string]any{"auth": "ldap"}}, `keys.vault.auth "ldap"`},
			"approle, no secret": {map[string]any{"vault": map[string]any{"auth": "approle", "appRole": map[string]any{"roleId": "r"}}}, "secretIdSecret is required"},
			"token, no secret":   {map[string]any{"vault": map[string]any{"auth": "token"}}, "tokenSecret is required"},
			"no vault address":   {map[string]any{"vault": map[string]any{"address": ""}}, "keys.vault.address is required"},
		} {
			if _, err := render(ch, map[string]any{"keys": tc.keys}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: render = %v, want an error containing %q", name, err, tc.want)
			}
		}
	})

	t.Run("missing required value fails", func(t *testing.T) {
		_, err := render(ch, map[string]any{"envoyEgress": map[string]any{"enabled": true, "config": ""}})
		if err == nil || !strings.Contains(err.Error(), "envoyEgress.config") {
			t.Errorf("render without envoyEgress.config = %v, want a required-value error", err)
		}
	})
}

// TestStrictDecodeRejects proves the decode above is strict: each case breaks one template of the chart, renders it
// with Helm and expects the decode of the broken object to fail, naming what is wrong.
func TestStrictDecodeRejects(t *testing.T) {
	cases := []struct {
		name, template, old, new string
		want                     string // in the decode error
		strict                   bool   // only a strict decode catches it
	}{
		{"misspelled field", "templates/deployment.yaml", "containerPort:", "contianerPort:",
			`unknown field "spec.template.spec.containers[0].ports[0].contianerPort"`, true},
		{"field at the wrong level", "templates/service.yaml", "  selector:", "  podSelector:",
			`unknown field "spec.podSelector"`, true},
		{"duplicate key", "templates/deployment.yaml", "automountServiceAccountToken: false",
			"automountServiceAccountToken: false\n      automountServiceAccountToken: true", `"automountServiceAccountToken" already set`, true},
		{"wrong type", "templates/deployment.yaml", "terminationGracePeriodSeconds: 80", `terminationGracePeriodSeconds: "80"`,
			"terminationGracePeriodSeconds", false},
		{"unknown kind", "templates/serviceaccount.yaml", "kind: ServiceAccount", "kind: ServiceAcount",
			`no kind "ServiceAcount" is registered`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := loadChart(t)
			i := slices.IndexFunc(ch.Templates, func(f *chart.File) bool { return f.Name == c.template })
			if i < 0 || !bytes.Contains(ch.Templates[i].Data, []byte(c.old)) {
				t.Fatalf("%s has no %q to break", c.template, c.old)
			}
			ch.Templates[i].Data = bytes.Replace(ch.Templates[i].Data, []byte(c.old), []byte(c.new), 1)
			manifests := renderChart(t, ch, nil)
			var failed []error
			for _, m := range manifests {
				if _, err := decode(m.Content); err != nil {
					failed = append(failed, err)
					if !strings.HasSuffix(m.Name, c.template) {
						t.Errorf("%s fails to decode, but only %s was broken: %v", m.Name, c.template, err)
					}
					if c.strict && runtime.IsStrictDecodingError(err) {
						// A lenient decode (what a map-based check, or an old client, does) drops the field silently.
						lenient := serializer.NewCodecFactory(scheme.Scheme).UniversalDeserializer()
						if _, _, err := lenient.Decode([]byte(m.Content), nil, nil); err != nil {
							t.Errorf("lenient decode of %s also fails: %v", m.Name, err)
						}
					}
				}
			}
			if len(failed) != 1 || !strings.Contains(failed[0].Error(), c.want) {
				t.Fatalf("decode errors %v, want one naming %s", failed, c.want)
			}
			if c.strict && !runtime.IsStrictDecodingError(failed[0]) {
				t.Errorf("%v is not a strict decoding error", failed[0])
			}
			t.Logf("%s: %v", c.template, failed[0])
		})
	}
}

// TestPlainManifests checks deploy/k8s: every document is a Kubernetes object that decodes strictly, and
// blindfold.yaml is the chart rendered with deploy/k8s/values.yaml, byte for byte as `helm template` prints it
// (regenerate with -update).
func TestPlainManifests(t *testing.T) {
	manifests := renderChart(t, loadChart(t), readValues(t, filepath.Join("k8s", "values.yaml")))
	var b strings.Builder
	b.WriteString("# Generated from deploy/helm/blindfold with deploy/k8s/values.yaml (cd deploy && go test . -update); do not edit.\n")
	b.WriteString("# Create the Secrets it references first; see docs/deploy.md.\n")
	for _, m := range manifests {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.Name, m.Content) // as helm template prints it
	}
	path := filepath.Join("k8s", "blindfold.yaml")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if filepath.Base(f) == "values.yaml" {
			continue
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if objs := objects(t, f, splitYAML(t, got)); len(objs) == 0 {
			t.Errorf("%s holds no objects", f)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != b.String() {
		t.Errorf("%s is stale; run: cd deploy && go test . -update", path)
	}
}
