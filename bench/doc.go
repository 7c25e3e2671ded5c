// Command bench measures Blindfold against a baseline taken in the same run: codec throughput, per-RPC and workflow
// latency and throughput through the proxy, codec-endpoint decode time, proxy memory, and a load run with a plaintext scan;
// and, only when named, the production path under faults (cluster: PostgreSQL, three proxy replicas behind xds, Vault).
//
// Usage:
//
//	go run ./bench [--quick] [--scenario codec,rpc,workflows,endpoint,cli,memory,load,cluster] [--load-workflows N] [--open-workflows N]
//
// Every scenario prints a table whose rows compare Blindfold with its baseline (raw AES-GCM, or the same calls made
// directly to the Temporal frontend), measured interleaved so both see the same machine load. --quick shrinks every
// scenario so the whole run takes under two minutes; CI runs it through TestQuick without asserting timings.
// docs/performance.md records the figures of a full run and what bounds them.
package main
