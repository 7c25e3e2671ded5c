package deploy

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "regenerate deploy/k8s/blindfold.yaml from the chart")

const chartDir = "helm/blindfold"

// renderChart renders every template of the chart with Go's text/template, sprig and the few functions Helm adds
// (include, toYaml, required), as `helm template` would, and returns the output per template file.
func renderChart(t *testing.T, values map[string]any, release, namespace string) map[string]string {
	t.Helper()
	out, err := render(t, values, release, namespace)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func render(t *testing.T, values map[string]any, release, namespace string) (map[string]string, error) {
	t.Helper()
	var chart map[string]any
	readYAML(t, filepath.Join(chartDir, "Chart.yaml"), &chart)

	tmpl := template.New("chart").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = func(v any) string {
		b, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(b), "\n")
	}
	funcs["required"] = func(msg string, v any) (any, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("required value missing: %s", msg)
		}
		return v, nil
	}
	funcs["include"] = func(name string, data any) (string, error) {
		var b bytes.Buffer
		err := tmpl.ExecuteTemplate(&b, name, data)
		return b.String(), err
	}
	tmpl.Funcs(funcs)

	files, err := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tmpl.New(filepath.Base(f)).Parse(string(b)); err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
	}
	data := map[string]any{
		"Values":  values,
		"Release": map[string]any{"Name": release, "Namespace": namespace, "Service": "Helm"},
		"Chart":   map[string]any{"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
	}
	out := map[string]string{}
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasPrefix(name, "_") || !strings.HasSuffix(name, ".yaml") {
			continue
		}
		var b bytes.Buffer
		if err := tmpl.ExecuteTemplate(&b, name, data); err != nil {
			return nil, fmt.Errorf("render %s: %w", name, err)
		}
		// Helm renders missing values as empty, not "<no value>".
		out[name] = strings.ReplaceAll(b.String(), "<no value>", "")
	}
	return out, nil
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// parseObjects splits a multi-document YAML stream and checks that every document is a Kubernetes object.
func parseObjects(t *testing.T, source, stream string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for i, doc := range docSep.Split(stream, -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var obj map[string]any
		if err := yaml.UnmarshalStrict([]byte(doc), &obj); err != nil {
			t.Fatalf("%s document %d is not YAML: %v\n%s", source, i, err, doc)
		}
		md, _ := obj["metadata"].(map[string]any)
		if obj["apiVersion"] == nil || obj["kind"] == nil || md["name"] == nil || md["name"] == "" {
			t.Fatalf("%s document %d is not a Kubernetes object (apiVersion, kind, metadata.name):\n%s", source, i, doc)
		}
		if strings.Contains(doc, "=\n") || strings.Contains(doc, "<no value>") {
			t.Errorf("%s: %s %s has an empty value:\n%s", source, obj["kind"], md["name"], doc)
		}
		objs = append(objs, obj)
	}
	return objs
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

// merge overlays src onto dst, recursively for maps.
func merge(dst, src map[string]any) map[string]any {
	out := maps.Clone(dst)
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := out[k].(map[string]any); ok {
				out[k] = merge(dm, sm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

func get(obj map[string]any, path ...string) any {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func TestHelmChartRenders(t *testing.T) {
	var defaults map[string]any
	readYAML(t, filepath.Join(chartDir, "values.yaml"), &defaults)
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
			out := renderChart(t, merge(defaults, over), "blindfold", "blindfold")
			kinds := map[string]map[string]any{}
			for _, file := range slices.Sorted(maps.Keys(out)) {
				for _, obj := range parseObjects(t, file, out[file]) {
					key := fmt.Sprintf("%s/%s", obj["kind"], get(obj, "metadata", "name"))
					if kinds[key] != nil {
						t.Errorf("%s rendered twice", key)
					}
					kinds[key] = obj
				}
			}
			for _, want := range []string{"Deployment/blindfold", "Service/blindfold", "Service/blindfold-headless", "NetworkPolicy/blindfold",
				"ConfigMap/blindfold-policy", "Secret/blindfold-kek", "PodDisruptionBudget/blindfold", "ServiceAccount/blindfold"} {
				if kinds[want] == nil {
					t.Errorf("%s not rendered; got %v", want, slices.Sorted(maps.Keys(kinds)))
				}
			}
			dep := kinds["Deployment/blindfold"]
			sel := get(dep, "spec", "selector", "matchLabels").(map[string]any)
			labels := get(dep, "spec", "template", "metadata", "labels").(map[string]any)
			for k, v := range sel {
				if labels[k] != v {
					t.Errorf("deployment selector %s=%v does not match its pod labels %v", k, v, labels)
				}
			}
			svcSel := get(kinds["Service/blindfold"], "spec", "selector").(map[string]any)
			if !maps.Equal(svcSel, sel) {
				t.Errorf("service selector %v differs from the deployment's %v", svcSel, sel)
			}
			// Egress: only the backend, Vault (when used), the xDS server (when used) and DNS.
			egress := get(kinds["NetworkPolicy/blindfold"], "spec", "egress").([]any)
			wantEgress := 2
			if over["keys"] != nil {
				wantEgress++
			}
			if over["xds"] != nil {
				wantEgress++
				if kinds["Deployment/blindfold-xds"] == nil || kinds["Service/blindfold-xds"] == nil {
					t.Error("xds enabled but its Deployment or Service is missing")
				}
			}
			if len(egress) != wantEgress {
				t.Errorf("network policy has %d egress rules, want %d", len(egress), wantEgress)
			}
			args := fmt.Sprint(get(dep, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)["args"])
			if over["envoyEgress"] != nil && !strings.Contains(args, "--upstream=127.0.0.1:7234") {
				t.Errorf("with envoy egress the proxy must dial envoy on loopback: %s", args)
			}
		})
	}

	t.Run("missing required value fails", func(t *testing.T) {
		vals := merge(defaults, map[string]any{"envoyEgress": map[string]any{"enabled": true, "config": ""}})
		_, tmplErr := render(t, vals, "blindfold", "blindfold")
		if tmplErr == nil || !strings.Contains(tmplErr.Error(), "envoyEgress.config") {
			t.Errorf("render without envoyEgress.config = %v, want a required-value error", tmplErr)
		}
	})
}

// TestPlainManifests checks deploy/k8s: every document is a Kubernetes object, and blindfold.yaml is the chart
// rendered with deploy/k8s/values.yaml (regenerate with -update).
func TestPlainManifests(t *testing.T) {
	var defaults, over map[string]any
	readYAML(t, filepath.Join(chartDir, "values.yaml"), &defaults)
	readYAML(t, filepath.Join("k8s", "values.yaml"), &over)
	out := renderChart(t, merge(defaults, over), "blindfold", "blindfold")
	var b strings.Builder
	b.WriteString("# Generated from deploy/helm/blindfold with deploy/k8s/values.yaml (go test ./deploy -update); do not edit.\n")
	b.WriteString("# Create the Secrets it references first; see docs/deploy.md.\n")
	for _, file := range slices.Sorted(maps.Keys(out)) {
		for _, doc := range docSep.Split(out[file], -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			b.WriteString("---\n# Source: blindfold/templates/" + file + "\n" + strings.Trim(doc, "\n") + "\n")
		}
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
		if objs := parseObjects(t, f, string(got)); len(objs) == 0 {
			t.Errorf("%s holds no objects", f)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != b.String() {
		t.Errorf("%s is stale; run go test ./deploy -update", path)
	}
}
