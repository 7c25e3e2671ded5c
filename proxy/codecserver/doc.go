// Package codecserver serves the Temporal remote codec protocol over HTTP for the Web UI and the temporal CLI, behind authentication, policy and the audit log.
//
// Routes: POST /{namespace}/decode, POST /{namespace}/encode, and POST /decode,
// POST /encode with the namespace in the X-Namespace header (what the Web UI
// sends). Bodies are {"payloads":[…]} with protobuf-JSON payloads.
//
// Status codes: 200 success; 400 malformed request; 401 no or bad credentials
// (with WWW-Authenticate); 403 policy refuses, or a browser origin that is not
// configured; 404 unknown route; 405 wrong method; 413 body or payload count
// over the limit; 415 a content type other than JSON; 429 rate limited; 503
// audit log or key service unavailable. Bad input never yields 500.
//
// Decode is per payload: a payload that cannot be opened (destroyed key,
// tampered, sealed for another namespace, unknown key) comes back as the
// ciphertext it was, with the metadata entry "blindfold-decode-error" (codec.MetadataDecodeError) saying
// why; the others are decoded, and the Blindfold-Failed-Payloads header counts
// the failures. That keeps the Web UI useful (it needs a full array back) and
// returns nothing the caller did not send. Encode is all or nothing.
//
// Decoder is that decode path on its own — authorize, audit, decode, mark
// failures — for callers other than the HTTP handler: `blindfold decode` uses
// it on exported histories, so both ways of reading a payload obey the same
// rules and leave the same records.
//
// Every authorization decision — and every failed authentication — is written
// to the audit log before the response is sent; no plaintext leaves unless its
// record is on disk.
package codecserver
