// Package deploy holds Blindfold's deployment artifacts (Helm chart, Kubernetes manifests, Dockerfile, systemd unit,
// Envoy egress configuration) and the tests that render and parse them; it has no Go API.
package deploy
