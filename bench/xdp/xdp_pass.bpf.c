/* The smallest XDP program: every frame goes on up the stack (XDP_PASS).
 *
 * bench:xdp attaches it in native mode to the router side of each LB's veth. A veth delivers
 * the frames its peer transmits with XDP_TX (the LB's program in native mode) only when it runs
 * NAPI, which it does while an XDP program is attached to it (or GRO is on); without it those
 * frames are dropped. Attached to every LB's link alike, so every router sees the same path.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
