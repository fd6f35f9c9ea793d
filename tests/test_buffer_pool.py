"""The CPU buffer pool (csrc/cpu/buffer_pool.h, fusedlstm.buffers): the layer ops' large buffers
come from blocks kept across calls, so a repeated call reuses memory instead of page-faulting
fresh memory in; the cache is bounded and can be emptied, and tensors from it behave like any
other tensor."""

import multiprocessing

import pytest
import torch

import fusedlstm

pytestmark = pytest.mark.skipif(not fusedlstm.buffers.cpu_pool_enabled(),
                                reason="the pool is off in AddressSanitizer builds")

MIB = 1 << 20


def layer_output(steps, batch=32, hidden=64, inputs=16):
    torch.manual_seed(0)
    x = torch.randn(steps, batch, inputs)
    h0, c0 = torch.zeros(batch, hidden), torch.zeros(batch, hidden)
    w_ih, w_hh = torch.randn(4 * hidden, inputs) * 0.1, torch.randn(4 * hidden, hidden) * 0.1
    out = torch.ops.fusedlstm.lstm_layer(x, h0, c0, w_ih, w_hh, None, None, None, None, False,
                                         False)[0]
    return out


def test_a_freed_output_is_reused_by_the_next_call():
    fusedlstm.buffers.release_cpu_buffers()
    out = layer_output(50)  # 50 * 32 * 64 floats: 400 KiB, above the pool's 256 KiB minimum
    expected = out.clone()
    address = out.data_ptr()
    del out
    assert fusedlstm.buffers.cpu_cached_bytes() >= 50 * 32 * 64 * 4
    again = layer_output(50)
    assert again.data_ptr() == address
    assert torch.equal(again, expected)


def test_release_gives_every_free_block_back():
    del_me = layer_output(50)
    del del_me
    cached = fusedlstm.buffers.cpu_cached_bytes()
    assert cached > 0
    assert fusedlstm.buffers.release_cpu_buffers() == cached
    assert fusedlstm.buffers.cpu_cached_bytes() == 0


def test_the_cache_holds_at_most_64_mib():
    fusedlstm.buffers.release_cpu_buffers()
    block = 1000 * 32 * 64 * 4  # 8,192,000 bytes, a multiple of 64 KiB
    outputs = [layer_output(1000) for _ in range(9)]  # 73.7 MB in all
    assert all(o.untyped_storage().nbytes() == block for o in outputs)
    del outputs
    assert 7 * block <= fusedlstm.buffers.cpu_cached_bytes() <= 64 * MIB
    huge = layer_output(1000, batch=288)  # 72 MiB: above the cap, never cached
    del huge
    assert fusedlstm.buffers.cpu_cached_bytes() <= 64 * MIB
    fusedlstm.buffers.release_cpu_buffers()


def test_pooled_tensors_behave_like_others():
    out = layer_output(50)
    values = out.clone()
    out.resize_(60, 32, 64)  # grows the storage through the pool's allocator
    assert torch.equal(out[:50], values)
    out[50:] = 1.0
    assert out.sum().isfinite()
    assert torch.equal(out.clone()[:50], values)


def _sum_of_layer_output(_):
    torch.set_num_threads(1)  # as DataLoader workers do: OpenMP's pool does not survive fork
    return float(layer_output(50).sum())


def test_forked_children_use_the_pool():
    # The pool's lock is held across fork and released on both sides (pthread_atfork); a child
    # forked after the parent used the pool computes as the parent does.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the children's thread count: the same arithmetic, bit for bit
    try:
        expected = float(layer_output(50).sum())
    finally:
        torch.set_num_threads(threads)
    with multiprocessing.get_context("fork").Pool(2) as workers:
        assert workers.map(_sum_of_layer_output, range(2)) == [expected, expected]
