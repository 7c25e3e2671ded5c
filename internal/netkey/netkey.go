// Package netkey names the source of a network connection for per-source rate limits, the same way at every door.
package netkey

import "net"

// Source is the rate-limit key of a remote address ("host:port" or a bare host): its IP, where an IPv6 address counts
// as its /64, since one host can fill its /64 with addresses of its own and would otherwise get a budget per address.
// Anything that is not an IP is returned as it is.
func Source(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return host
	case ip.To4() != nil:
		return ip.To4().String() // an IPv4-mapped IPv6 address is its IPv4 address
	default:
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
}
