// Package sdkplugin gives Go SDK clients and workers Blindfold encryption in one line: a data converter, failure converter and SDK plugin that seal payloads in the codec package's envelope, so SDK-encrypted and proxy-encrypted histories interoperate.
//
// Enable it by adding the plugin to client.Options.Plugins (not worker.Options: the converters belong to the
// client, and workers built from the client inherit them):
//
//	p, err := sdkplugin.New(keyring) // e.g. a *keys.Manager from keys.OpenLocal
//	c, err := client.Dial(client.Options{Plugins: []client.Plugin{p}})
//
// Payloads are sealed for the client's namespace. Where the SDK passes a serialization context
// (converter.WorkflowSerializationContext or converter.ActivitySerializationContext, SDK v1.50) its namespace is
// used instead, which only differs for work aimed at another namespace (a child workflow or signal across
// namespaces); the replayer's placeholder namespace and Nexus contexts, which name none, are ignored. The
// workflow id the context also carries is not bound yet: the envelope's associated data names the namespace only.
//
// Failure messages and stack traces are moved into encrypted encoded attributes (the SDK's "encode common
// attributes" convention; the server stores "Encoded failure"). A failure whose text cannot be sealed is sent with
// the text withheld rather than in plaintext or with a panic. The plugin also closes a gap of the SDK's own: the
// text of a failed query, which the SDK sends in plaintext next to the sealed failure, is replaced by the
// placeholder on the way out and restored for the caller from the sealed failure.
//
// NewRemote builds the same plugin without local keys: it calls a Blindfold codec endpoint
// (POST {endpoint}/{namespace}/encode and /decode, the Temporal remote codec protocol) through the SDK's own
// remote codec client, and refuses to send anything the endpoint returns unencrypted.
package sdkplugin
