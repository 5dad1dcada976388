// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* bpfobj: libbpf/libxdp glue for Ringlane's XDP objects. See bpfobj.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <xdp/libxdp.h>

#include "bpfobj.h"

struct rl_bpfobj {
	struct bpf_object *obj;
};

struct rl_xdp_attachment {
	struct xdp_program *prog;
	int ifindex;
	int mode;
	int plain;		/* attached by bpf_xdp_attach(), not libxdp */
	int prog_fd;
};

int rl_bpfobj__open(const char *path, const char *pin_dir, struct rl_bpfobj **out)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pin_dir);
	struct rl_bpfobj *o;
	int err;

	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->obj = bpf_object__open_file(path, &opts);
	err = libbpf_get_error(o->obj);
	if (err) {
		free(o);
		return err < 0 ? err : -err;
	}
	*out = o;
	return 0;
}

int rl_bpfobj__set_const(struct rl_bpfobj *o, const char *name, __u64 value, __u32 size)
{
	const struct btf_var_secinfo *vs;
	const struct btf_type *sec;
	struct bpf_map *rodata = NULL, *m;
	const struct btf *btf;
	const void *initial;
	size_t data_sz;
	__u8 *data;
	int id, i, err;

	btf = bpf_object__btf(o->obj);
	if (!btf)
		return -ENOENT;
	bpf_object__for_each_map(m, o->obj) {
		const char *mn = bpf_map__name(m);
		size_t l = strlen(mn);

		if (l >= 7 && !strcmp(mn + l - 7, ".rodata"))
			rodata = m;
	}
	id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
	if (!rodata || id < 0)
		return -ENOENT;
	initial = bpf_map__initial_value(rodata, &data_sz);
	sec = btf__type_by_id(btf, id);
	vs = btf_var_secinfos(sec);
	for (i = 0; i < btf_vlen(sec); i++, vs++) {
		const struct btf_type *var = btf__type_by_id(btf, vs->type);

		if (strcmp(btf__name_by_offset(btf, var->name_off), name))
			continue;
		if (vs->size != size || vs->offset + size > data_sz || !initial)
			return -EINVAL;
		/* libbpf 1.1 hands out the initial image read-only: copy,
		 * patch, set. Little-endian host: the low @size bytes. */
		data = malloc(data_sz);
		if (!data)
			return -ENOMEM;
		memcpy(data, initial, data_sz);
		memcpy(data + vs->offset, &value, size);
		err = bpf_map__set_initial_value(rodata, data, data_sz);
		free(data);
		return err;
	}
	return -ENOENT;
}

int rl_bpfobj__load(struct rl_bpfobj *o)
{
	return bpf_object__load(o->obj);
}

int rl_bpfobj__prog_fd(struct rl_bpfobj *o, const char *name)
{
	struct bpf_program *p = bpf_object__find_program_by_name(o->obj, name);

	return p ? bpf_program__fd(p) : -ENOENT;
}

int rl_bpfobj__map_fd(struct rl_bpfobj *o, const char *name)
{
	struct bpf_map *m = bpf_object__find_map_by_name(o->obj, name);

	return m ? bpf_map__fd(m) : -ENOENT;
}

void rl_bpfobj__close(struct rl_bpfobj *o)
{
	if (!o)
		return;
	bpf_object__close(o->obj);
	free(o);
}

static __u32 mode_flags(int mode)
{
	return mode == RL_XDP_MODE_SKB ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
}

int rl_xdp__attach(struct rl_bpfobj *o, const char *prog, int ifindex, int mode,
		   int *multiprog, struct rl_xdp_attachment **out)
{
	struct rl_xdp_attachment *a;
	struct xdp_multiprog *mp;
	int fd, err;

	fd = rl_bpfobj__prog_fd(o, prog);
	if (fd < 0)
		return fd;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->ifindex = ifindex;
	a->mode = mode;
	a->prog_fd = fd;
	{
		DECLARE_LIBXDP_OPTS(xdp_program_opts, popts, .fd = fd);

		a->prog = xdp_program__create(&popts);
	}
	err = libxdp_get_error(a->prog);
	if (!err)
		err = xdp_program__attach(a->prog, ifindex, (enum xdp_attach_mode)mode, 0);
	if (err) {
		/* libxdp could not attach at all: a plain attach that never
		 * replaces someone else's program. */
		if (!libxdp_get_error(a->prog))
			xdp_program__close(a->prog);
		a->prog = NULL;
		err = bpf_xdp_attach(ifindex, fd, mode_flags(mode) | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL);
		if (err) {
			free(a);
			return err == -EBUSY ? -EEXIST : err;
		}
		a->plain = 1;
		*multiprog = 0;
		*out = a;
		return 0;
	}
	*multiprog = 0;
	mp = xdp_multiprog__get_from_ifindex(ifindex);
	if (!libxdp_get_error(mp) && mp) {
		*multiprog = !xdp_multiprog__is_legacy(mp);
		xdp_multiprog__close(mp);
	}
	*out = a;
	return 0;
}

int rl_xdp__detach(struct rl_xdp_attachment *a)
{
	int err;

	if (!a)
		return 0;
	if (a->plain) {
		LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = a->prog_fd);

		/* XDP_FLAGS_REPLACE: only if our program is still the one there */
		err = bpf_xdp_attach(a->ifindex, -1, mode_flags(a->mode) | XDP_FLAGS_REPLACE, &opts);
		if (err == -EEXIST)
			err = -ENOENT;
	} else {
		err = xdp_program__detach(a->prog, a->ifindex, (enum xdp_attach_mode)a->mode, 0);
		xdp_program__close(a->prog);
	}
	free(a);
	return err;
}

void rl_xdp__release(struct rl_xdp_attachment *a)
{
	if (!a)
		return;
	/* libxdp duplicated the program fd; closing its handle only drops
	 * that reference, the attachment is the netdev's. */
	if (!a->plain)
		xdp_program__close(a->prog);
	free(a);
}

static int prog_name_is(int fd, const char *name)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return 0;
	return !strncmp(info.name, name, sizeof(info.name) - 1);
}

int rl_xdp__detach_by_name(int ifindex, int mode, const char *prog_name)
{
	struct xdp_multiprog *mp;
	struct xdp_program *p;
	int err = -ENOENT;

	mp = xdp_multiprog__get_from_ifindex(ifindex);
	if (libxdp_get_error(mp) || !mp)
		return -ENOENT;
	if (xdp_multiprog__attach_mode(mp) != (enum xdp_attach_mode)mode)
		goto out;
	if (xdp_multiprog__is_legacy(mp)) {
		p = xdp_multiprog__main_prog(mp);
		if (p && prog_name_is(xdp_program__fd(p), prog_name)) {
			LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = xdp_program__fd(p));

			err = bpf_xdp_attach(ifindex, -1, mode_flags(mode) | XDP_FLAGS_REPLACE, &opts);
		}
		goto out;
	}
	for (p = xdp_multiprog__next_prog(NULL, mp); p; p = xdp_multiprog__next_prog(p, mp)) {
		if (prog_name_is(xdp_program__fd(p), prog_name)) {
			err = xdp_program__detach(p, ifindex, (enum xdp_attach_mode)mode, 0);
			break;
		}
	}
out:
	xdp_multiprog__close(mp);
	return err;
}

int rl_bpf__test_run(int prog_fd, const void *data_in, __u32 size_in,
		     void *data_out, __u32 *size_out, __u32 ingress_ifindex,
		     __u32 rx_queue, __u32 *retval)
{
	struct xdp_md ctx = {
		.data_end = size_in,
		.ingress_ifindex = ingress_ifindex,
		.rx_queue_index = rx_queue,
	};
	LIBBPF_OPTS(bpf_test_run_opts, opts,
		    .data_in = data_in, .data_size_in = size_in,
		    .data_out = data_out, .data_size_out = *size_out,
		    .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = 1);
	int err;

	err = bpf_prog_test_run_opts(prog_fd, &opts);
	if (err)
		return err;
	*size_out = opts.data_size_out;
	*retval = opts.retval;
	return 0;
}

int rl_bpf__test_run_repeat(int prog_fd, const void *data_in, __u32 size_in,
			    __u32 ingress_ifindex, __u32 rx_queue, __u32 repeat,
			    __u32 *retval, __u32 *duration_ns)
{
	struct xdp_md ctx = {
		.data_end = size_in,
		.ingress_ifindex = ingress_ifindex,
		.rx_queue_index = rx_queue,
	};
	LIBBPF_OPTS(bpf_test_run_opts, opts,
		    .data_in = data_in, .data_size_in = size_in,
		    .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = repeat);
	int err;

	err = bpf_prog_test_run_opts(prog_fd, &opts);
	if (err)
		return err;
	*retval = opts.retval;
	*duration_ns = opts.duration;
	return 0;
}

int rl_policy__new_trie(void)
{
	/* The shape of rl_policy's inner template in maps.h: the kernel
	 * compares type, key and value size and flags (max_entries is kept
	 * the same too, though only array inner maps must match it). */
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_NO_PREALLOC);

	return bpf_map_create(BPF_MAP_TYPE_LPM_TRIE, "rl_policy_gen", sizeof(struct rl_policy_key),
			      sizeof(struct rl_policy_value), RL_MAX_POLICY_ENTRIES, &opts);
}

struct rl_flow_reader {
	struct ring_buffer *rb;
	struct rl_flow_sample *out;	/* the current read's destination */
	__u32 max;
	__u32 n;
	int full;			/* out is full: the callback stopped the walk */
};

/* ring_buffer sample callback: copy one record into the caller's array.
 * A negative return stops libbpf's walk of the ring; it has then consumed
 * the record just copied and no other, so nothing is lost. */
static int flow_reader_copy(void *ctx, void *data, size_t size)
{
	struct rl_flow_reader *r = ctx;

	if (size != sizeof(struct rl_flow_sample))
		return 0;
	memcpy(&r->out[r->n++], data, sizeof(struct rl_flow_sample));
	if (r->n < r->max)
		return 0;
	r->full = 1;
	return -ENOSPC;
}

int rl_flow_reader__new(int map_fd, struct rl_flow_reader **out)
{
	struct rl_flow_reader *r;
	int err;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->rb = ring_buffer__new(map_fd, flow_reader_copy, r, NULL);
	err = libbpf_get_error(r->rb);
	if (err) {
		free(r);
		return err < 0 ? err : -err;
	}
	*out = r;
	return 0;
}

int rl_flow_reader__read(struct rl_flow_reader *r, struct rl_flow_sample *out, __u32 max,
			 int timeout_ms)
{
	int err;

	if (!max)
		return 0;
	r->out = out;
	r->max = max;
	r->n = 0;
	r->full = 0;
	/* What is there already first, without a syscall; wait only if the
	 * ring was empty. */
	err = ring_buffer__consume(r->rb);
	if (err >= 0 && r->n == 0 && timeout_ms != 0)
		err = ring_buffer__poll(r->rb, timeout_ms);
	r->out = NULL;
	/* a full array or a signal is a short read, not an error */
	if (err >= 0 || r->full || err == -EINTR)
		return r->n;
	return err;
}

void rl_flow_reader__free(struct rl_flow_reader *r)
{
	if (!r)
		return;
	ring_buffer__free(r->rb);
	free(r);
}
