package netkey

import "testing"

func TestSource(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.7:1", "192.0.2.7"},
		{"192.0.2.7", "192.0.2.7"},
		{"[2001:db8:1:2::1]:5000", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::9]:6000", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"[::ffff:192.0.2.7]:1", "192.0.2.7"},
		{"pipe", "pipe"},
	} {
		if got := Source(tc.addr); got != tc.want {
			t.Errorf("Source(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
