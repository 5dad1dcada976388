/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * bpfobj: load Ringlane's XDP objects, attach and detach them, and run them
 * under BPF_PROG_TEST_RUN. A thin layer over libbpf and libxdp so that
 * Python never needs ctypes or a second BPF library.
 *
 * All functions return 0 (or an fd) on success and -errno on failure; none
 * block beyond the bpf() and netlink syscalls they make.
 */
#ifndef RL_BPFOBJ_H
#define RL_BPFOBJ_H

#include <stddef.h>
#include <linux/types.h>
#include "ringlane/abi.h"
/* The libbpf declarations repeated in the cffi section below: including the
 * real headers makes the compiler check that our copies match them. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

/* cffi:begin */
struct rl_bpfobj;
struct rl_xdp_attachment;

/* Attach modes, as libxdp's enum xdp_attach_mode. */
#define RL_XDP_MODE_NATIVE 1
#define RL_XDP_MODE_SKB 2

/* Open @path; maps declared with LIBBPF_PIN_BY_NAME are pinned in (or reused
 * from) @pin_dir, which must exist on a bpffs. -ENOENT, -EINVAL, -errno. */
int rl_bpfobj__open(const char *path, const char *pin_dir, struct rl_bpfobj **out);

/* Set the const volatile global @name (1, 2, 4 or 8 bytes) before load.
 * -ENOENT if there is no such variable, -EINVAL if @size differs. */
int rl_bpfobj__set_const(struct rl_bpfobj *o, const char *name, __u64 value, __u32 size);

/* Load every program and create or reuse the pinned maps. -errno; the
 * verifier log goes to libbpf's print callback (stderr). */
int rl_bpfobj__load(struct rl_bpfobj *o);

/* fd of program @name / map @name after load, or -ENOENT. */
int rl_bpfobj__prog_fd(struct rl_bpfobj *o, const char *name);
int rl_bpfobj__map_fd(struct rl_bpfobj *o, const char *name);

/* Close the object (pinned maps stay pinned). NULL is a no-op. */
void rl_bpfobj__close(struct rl_bpfobj *o);

/* Attach program @prog of @o to @ifindex in @mode through libxdp, which
 * uses its dispatcher where the kernel allows and a plain attach otherwise.
 * *@multiprog is set to 1 when the dispatcher is in use, 0 for a plain
 * attach. -EEXIST if another program holds the hook in a way libxdp
 * cannot share. */
int rl_xdp__attach(struct rl_bpfobj *o, const char *prog, int ifindex, int mode,
		   int *multiprog, struct rl_xdp_attachment **out);

/* Detach exactly the program rl_xdp__attach() attached; a program someone
 * else attached since is left alone (-ENOENT). Frees @a in every case. */
int rl_xdp__detach(struct rl_xdp_attachment *a);

/* Detach our program @prog_name from @ifindex if it is attached there in
 * @mode (recovery after a crash, when no rl_xdp_attachment survives).
 * Programs of any other name are never touched. 0 if ours was removed,
 * -ENOENT if it was not there. */
int rl_xdp__detach_by_name(int ifindex, int mode, const char *prog_name);

/* BPF_PROG_TEST_RUN of an XDP program on one packet. @data_out must have
 * room for @size_out bytes; *@size_out is updated. The context carries
 * @ingress_ifindex and @rx_queue. *@retval is the XDP action. */
int rl_bpf__test_run(int prog_fd, const void *data_in, __u32 size_in,
		     void *data_out, __u32 *size_out, __u32 ingress_ifindex,
		     __u32 rx_queue, __u32 *retval);

/* BPF_PROG_TEST_RUN of an XDP program on one packet, @repeat times in one
 * syscall (the kernel times the loop): the micro-benchmark of the test
 * fixtures. The packet is not copied out. *@retval is the XDP action of the
 * last run, *@duration_ns the kernel's mean time of one run. -errno. */
int rl_bpf__test_run_repeat(int prog_fd, const void *data_in, __u32 size_in,
			    __u32 ingress_ifindex, __u32 rx_queue, __u32 repeat,
			    __u32 *retval, __u32 *duration_ns);

/* Free @a without detaching: the program stays attached (the netdev holds
 * it) until someone detaches it, e.g. rl_xdp__detach_by_name() after an
 * agent restart. NULL is a no-op. */
void rl_xdp__release(struct rl_xdp_attachment *a);

/*
 * libbpf's map syscall wrappers, exposed as they are so that Python manages
 * the pinned maps without a second BPF library. With libbpf >= 1.0 every
 * one returns -errno on failure (and sets errno).
 */

/* fd of the object pinned at @pathname (on a bpffs). */
int bpf_obj_get(const char *pathname);

/* Create or replace (@flags BPF_ANY = 0, BPF_NOEXIST = 1, BPF_EXIST = 2)
 * the value of @key. @key and @value must be the map's key/value size. */
int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);

/* Copy the value of @key into @value (for per-CPU maps: one 8-byte aligned
 * slot per possible CPU). -ENOENT if absent. */
int bpf_map_lookup_elem(int fd, const void *key, void *value);

/* Delete @key. -ENOENT if absent. */
int bpf_map_delete_elem(int fd, const void *key);

/* The key after @key (the first one if @key is NULL or absent) into
 * @next_key; -ENOENT after the last. */
int bpf_map_get_next_key(int fd, const void *key, void *next_key);

/* Number of possible CPUs (the slot count of per-CPU map values). */
int libbpf_num_possible_cpus(void);

/* A new fd on the map of kernel id @id (what a lookup in an array of maps
 * returns to user space). -ENOENT if that map is gone. */
int bpf_map_get_fd_by_id(__u32 id);

/*
 * Policy and flow samples (abi.h "Policy", maps.h rl_policy,
 * rl_flow_samples).
 */

/* A new, empty policy trie of exactly the shape rl_policy's inner template
 * declares (maps.h), so that the kernel accepts it in rl_policy[0]. Returns
 * its fd (the caller closes it) or -errno; does not block. */
int rl_policy__new_trie(void);

struct rl_flow_reader;

/* A consumer of the rl_flow_samples ring buffer @map_fd (which must stay
 * open until rl_flow_reader__free()). -EINVAL if @map_fd is no ring buffer,
 * -ENOMEM, -errno. */
int rl_flow_reader__new(int map_fd, struct rl_flow_reader **out);

/* Copy up to @max samples into @out, oldest first; the rest stay in the
 * ring for the next call. Waits up to @timeout_ms (0: not at all, -1:
 * forever) only while the ring is empty. Returns how many were copied
 * (0 on timeout or a signal) or -errno. Records of another size (another
 * ABI) are skipped. Blocks; call it without holding locks others need. */
int rl_flow_reader__read(struct rl_flow_reader *r, struct rl_flow_sample *out, __u32 max,
			 int timeout_ms);

/* Free @r (the map fd stays the caller's). NULL is a no-op. */
void rl_flow_reader__free(struct rl_flow_reader *r);
/* cffi:end */

#endif /* RL_BPFOBJ_H */
