// Package deploy holds Blindfold's deployment artifacts (Helm chart, Kubernetes manifests, Dockerfile, systemd unit,
// Envoy egress configuration) and the tests that render and parse them; it has no Go API.
//
// It is its own Go module (github.com/blindfold-dev/blindfold/deploy) so that Helm and the Kubernetes API types its
// tests use never enter the main module: the tests render the chart with Helm's engine (helm.sh/helm/v3) and decode
// every rendered object strictly into its k8s.io/api type. Run them with `cd deploy && go test ./...`; scripts/test
// does. `go test . -update` regenerates k8s/blindfold.yaml from the chart and k8s/values.yaml.
package deploy
