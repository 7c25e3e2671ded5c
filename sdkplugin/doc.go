// Package sdkplugin gives Go SDK clients and workers Blindfold encryption in one line: a data converter, failure converter and SDK plugin that seal payloads in the codec package's envelope, so SDK-encrypted and proxy-encrypted histories interoperate.
//
// Enable it by adding the plugin to client.Options.Plugins (not worker.Options: the converters belong to the
// client, and workers built from the client inherit them):
//
//	p, err := sdkplugin.New(keyring) // e.g. a *keys.Manager from keys.OpenLocal
//	c, err := client.Dial(client.Options{Plugins: []client.Plugin{p}})
//
// Payloads are sealed for the client's namespace and bound (envelope format v2) to what they belong to there, as the
// SDK's serialization context (SDK v1.50) names it: a workflow's values to its workflow id (the child's for a child
// workflow, the target's for an external signal, in the namespace the context names), an activity's to its workflow,
// a Nexus operation's to "<service>/<operation>". Decoding in a context refuses values bound elsewhere
// (codec.ErrWrongBinding): a value the backend copied from one workflow into another does not open there. The rules
// match the Blindfold proxy's, so mixed fleets interoperate; docs/binding.md lists them, and what they cannot stop.
// Without a context (DataConverter, PayloadCodec used directly) values are bound to the namespace only and every
// binding opens, like the codec endpoint. The replayer's placeholder namespace and workflow id are ignored. Nexus
// across namespaces needs WithNexusPeers on both sides.
//
// Failure messages and stack traces are moved into encrypted encoded attributes (the SDK's "encode common
// attributes" convention; the server stores "Encoded failure"). A failure whose text cannot be sealed is sent with
// the text withheld rather than in plaintext or with a panic. The plugin also closes a gap of the SDK's own: the
// text of a failed query, which the SDK sends in plaintext next to the sealed failure, is replaced by the
// placeholder on the way out and restored for the caller from the sealed failure.
//
// NewRemote builds the same plugin without local keys: it calls a Blindfold codec endpoint
// (POST {endpoint}/{namespace}/encode and /decode, the Temporal remote codec protocol) through the SDK's own
// remote codec client, and refuses to send anything the endpoint returns unencrypted. The protocol carries no
// binding: a remote plugin's values are bound to the namespace only, and it checks no binding when decoding.
package sdkplugin
