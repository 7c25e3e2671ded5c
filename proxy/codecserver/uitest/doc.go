// Package uitest drives the Temporal Web UI in headless Chromium against the codec endpoint, to prove that what an auditor sees is decoded (or, when refused, still encrypted).
package uitest
