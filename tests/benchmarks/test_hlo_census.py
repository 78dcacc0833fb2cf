"""`benchmarks/hlo_census.py`: what one iteration of a compiled loop launches and copies."""

import json

import pytest

from benchmarks import hlo_census

# A hand-written optimized module: a loop whose body copies a [2, 4, 8, 16] float32 buffer once,
# writes one slot of it and runs one matmul; and an initializer loop that must be left out.
LOOP_MODULE = """\
HloModule jit_stateless, entry_computation_layout={()->f32[2,4,8,16]{3,2,1,0}}

%fused_computation (p0: f32[2,4,8,16], p1: f32[2,4,1,16], p2: s32[]) -> f32[2,4,8,16] {
  %p0 = f32[2,4,8,16]{3,2,1,0} parameter(0)
  %p1 = f32[2,4,1,16]{3,2,1,0} parameter(1)
  %p2 = s32[] parameter(2)
  %zero = s32[] constant(0)
  ROOT %dus = f32[2,4,8,16]{3,2,1,0} dynamic-update-slice(%p0, %p1, %zero, %zero, %p2, %zero)
}

%body (state: (s32[], f32[2,4,8,16], f32[2,4,1,16])) -> (s32[], f32[2,4,8,16], f32[2,4,1,16]) {
  %state = (s32[], f32[2,4,8,16]{3,2,1,0}, f32[2,4,1,16]{3,2,1,0}) parameter(0)
  %i = s32[] get-tuple-element(%state), index=0
  %cache = f32[2,4,8,16]{3,2,1,0} get-tuple-element(%state), index=1
  %new = f32[2,4,1,16]{3,2,1,0} get-tuple-element(%state), index=2
  %copy.1 = f32[2,4,8,16]{3,2,1,0} copy(%cache)
  %write = f32[2,4,8,16]{3,2,1,0} fusion(%copy.1, %new, %i), kind=kLoop, calls=%fused_computation
  %flat = f32[2,4,128]{2,1,0} bitcast(%write)
  %dot.1 = f32[2,4,4]{2,1,0} dot(%flat, %flat), lhs_batch_dims={0}, lhs_contracting_dims={2}, rhs_batch_dims={0}, rhs_contracting_dims={2}
  ROOT %out = (s32[], f32[2,4,8,16]{3,2,1,0}, f32[2,4,1,16]{3,2,1,0}) tuple(%i, %write, %new)
}

%condition (state: (s32[], f32[2,4,8,16], f32[2,4,1,16])) -> pred[] {
  %state = (s32[], f32[2,4,8,16]{3,2,1,0}, f32[2,4,1,16]{3,2,1,0}) parameter(0)
  %i = s32[] get-tuple-element(%state), index=0
  %eight = s32[] constant(8)
  ROOT %less = pred[] compare(%i, %eight), direction=LT
}

ENTRY %main () -> f32[2,4,8,16] {
  %init = (s32[], f32[2,4,8,16]{3,2,1,0}, f32[2,4,1,16]{3,2,1,0}) constant({...})
  %loop = (s32[], f32[2,4,8,16]{3,2,1,0}, f32[2,4,1,16]{3,2,1,0}) while(%init), condition=%condition, body=%body
  ROOT %cache = f32[2,4,8,16]{3,2,1,0} get-tuple-element(%loop), index=1
}
"""  # noqa: E501 (XLA writes long lines)


def test_counts_the_launches_and_copies_of_one_step():
    found = hlo_census.loop_census(LOOP_MODULE)
    assert found["loop_body"] == "body"
    assert found["instructions"] == {"copy": 1, "fusion": 1, "dot": 1}
    assert found["launches"] == 3  # parameters, tuple plumbing and the bitcast launch nothing
    assert found["copies"] == ["f32[2,4,8,16]"]
    assert found["copy_bytes"] == 2 * 4 * 8 * 16 * 4
    assert found["cache_buffer"] == "f32[2,4,8,16]"
    assert found["kernels_in_calls"] == 0
    assert found["known_trip_count"] is None  # the hand-written loop has no backend_config
    # The in-place write counts its one slot, the copy and the matmul their results.
    assert found["written_bytes"] == 2 * 4 * 1 * 16 * 4 + 2 * 4 * 8 * 16 * 4 + 2 * 4 * 4 * 4
    assert found["large_writes"] == []


def test_entry_launches_count_the_top_level_of_the_entry():
    assert hlo_census.entry_launches(LOOP_MODULE) == 1  # the while; its body is not counted
    with pytest.raises(ValueError, match="ENTRY"):
        hlo_census.entry_launches("HloModule m\n")


def test_a_large_write_is_named():
    """At batch 1 XLA's GPU compiler may turn a matmul into a product and a sum, and write the
    weight-sized product when it does not fuse the two."""
    module = LOOP_MODULE.replace(
        "  %flat =",
        "  %product = bf16[3072,768]{1,0} fusion(%cache), kind=kLoop, calls=%fused_multiply\n"
        "  %flat =",
    )
    found = hlo_census.loop_census(module)
    assert found["large_writes"] == ["bf16[3072,768]"]
    assert found["written_bytes"] == hlo_census.loop_census(LOOP_MODULE)["written_bytes"] + (
        3072 * 768 * 2)


def test_tuple_results_count_and_async_pairs_count_once():
    """GPU forms: a cuBLAS matmul returns (output, workspace); copy-start returns
    (destination, source, context) and its copy-done launches nothing."""
    module = LOOP_MODULE.replace(
        "  %flat =",
        "  %gemm = (f32[2,4,4]{2,1,0}, s8[4194304]{0}) custom-call(%cache, %cache), "
        'custom_call_target="__cublas$gemm"\n'
        "  %start = (f32[2,4,8,16]{3,2,1,0}, f32[2,4,8,16]{3,2,1,0}, u32[]) "
        "copy-start(%write)\n"
        "  %done = f32[2,4,8,16]{3,2,1,0} copy-done(%start)\n"
        "  %flat =",
    )
    found = hlo_census.loop_census(module)
    assert found["instructions"] == {"copy": 1, "fusion": 1, "dot": 1, "custom-call": 1,
                                     "copy-start": 1}
    assert found["copies"] == ["f32[2,4,8,16]", "f32[2,4,8,16]"]
    assert found["copy_bytes"] == 2 * 2 * 4 * 8 * 16 * 4
    # Written: the base loop's, the matmul's output without its workspace, the copy's
    # destination.
    assert found["written_bytes"] == hlo_census.loop_census(LOOP_MODULE)["written_bytes"] + (
        2 * 4 * 4 * 4 + 2 * 4 * 8 * 16 * 4)
    assert hlo_census.parse_instruction(
        "  ROOT %t = (s32[], (f32[2]{0}, pred[])) tuple(%a, %b)") == (
        "(s32[], (f32[2]{0}, pred[]))", "tuple")


def test_a_command_buffer_is_one_launch_holding_its_kernels():
    graph = """
%command_buffer (a: f32[8], b: f32[8]) -> f32[8] {
  %a = f32[8]{0} parameter(0)
  %b = f32[8]{0} parameter(1)
  %sum = f32[8]{0} fusion(%a, %b), kind=kLoop, calls=%fused_add
  ROOT %product = f32[8]{0} fusion(%sum, %b), kind=kLoop, calls=%fused_multiply
}
"""
    module = LOOP_MODULE.replace(
        "  %flat =",
        "  %graph = (f32[8]{0}, f32[8]{0}) call(%i, %i), to_apply=%command_buffer\n"
        "  %flat =",
    ).replace("%condition (", graph.lstrip() + "\n%condition (")
    found = hlo_census.loop_census(module)
    assert found["instructions"]["call"] == 1
    assert found["kernels_in_calls"] == 2
    assert hlo_census.loop_census("HloModule m\n\nENTRY %main () -> f32[] {\n}\n") is None


def test_reads_a_dump_folder_and_writes_json(tmp_path, capsys):
    dump = tmp_path / "hlo"
    dump.mkdir()
    (dump / "module_0007.jit_stateless.cpu_after_optimizations.txt").write_text(LOOP_MODULE)
    (dump / "module_0001.jit__normal.cpu_after_optimizations.txt").write_text(LOOP_MODULE)
    (dump / "module_0007.jit_stateless.before_optimizations.txt").write_text(LOOP_MODULE)
    output = tmp_path / "census.json"
    assert hlo_census.main([str(dump), f"--output={output}"]) == 0
    loops = json.loads(output.read_text())["loops"]
    assert [loop["module"] for loop in loops] == ["jit_stateless"]  # not the initializer
    assert "jit_stateless" in capsys.readouterr().out


def test_a_real_compiled_loop():
    import jax  # JAX hands out a compiled module's optimized HLO text in process.
    import jax.numpy as jnp

    def fill(cache):
        def step(index, cache):
            return jax.lax.dynamic_update_slice(cache, jnp.ones((4, 1, 8)), (0, index, 0))
        return jax.lax.fori_loop(0, 16, step, cache)

    text = jax.jit(fill).lower(jnp.zeros((4, 16, 8))).compile().as_text()
    found = hlo_census.loop_census(text)
    assert found["launches"] >= 1
    assert found["cache_buffer"] is None  # rank 3: not a key/value cache
    assert found["known_trip_count"] == 16
    assert "f32[4,16,8]" not in found["copies"]  # the write is in place


def test_missing_or_binary_dumps_say_how_to_make_text_ones(tmp_path):
    with pytest.raises(FileNotFoundError, match="xla_dump_to"):
        hlo_census.census(tmp_path / "absent")
    with pytest.raises(ValueError, match="xla_dump_hlo_as_text"):
        hlo_census.census(tmp_path)
