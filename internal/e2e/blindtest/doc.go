// Package blindtest holds the end-to-end acceptance tests of "the backend learns nothing and can forge nothing": the
// embedded Temporal server, the Go SDK, and the proxy under test as a gateway from the production assembly
// (internal/gateway via gatewayenv), with a recording relay between the gateway and the frontend that keeps every
// frame the backend receives.
//
// Two families of tests:
//
//   - Blindness (scenario_test.go): a scenario that puts a distinct marker, named by its field, into every user-data
//     field the Go SDK can send. Every value must read back exactly, and no marker may appear in the request frames the
//     backend received, in the proxy's log or in the server's log. A control run of the same scenario without the proxy
//     must show the markers, so the scan is known not to be blind.
//   - Forgery (forgery_test.go, unknown_test.go): a raw WorkflowService client dialed straight to the frontend plays the
//     hostile backend and injects plaintext, payloads sealed for another namespace, tampered and unknown-format
//     envelopes; a raw client behind the proxy sends fake envelopes and messages with unknown protobuf fields. Each must
//     fail only the task or call that needs the value, naming the field and the reason, and store nothing.
//
// The tests are skipped with -short: they start the embedded server.
package blindtest
