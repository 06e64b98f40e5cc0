"""The option table, Config, environment parsing and policy selection."""

from __future__ import annotations

import dataclasses

import pytest

import simalloc
from simalloc import OPTIONS, Config, ConfigError
from simalloc.policy import (
    DelayedSlabPurgePolicy,
    FastPolicy,
    LeanPolicy,
    ReleasePolicy,
    make_policy,
)

# ---------------------------------------------------------------- table and Config


def test_table_and_config_agree():
    fields = {f.name: f.default for f in dataclasses.fields(Config)}
    table = {o.name: o.default for o in OPTIONS}
    assert fields == table
    assert [f.name for f in dataclasses.fields(Config)] == [o.name for o in OPTIONS]
    assert Config.defaults() == Config()
    Config().validate()
    for opt in OPTIONS:
        assert opt.env_names[0] == "SIMALLOC_" + opt.name.upper()
        assert opt.doc and opt.kind in ("bool", "int", "float", "choice", "str")
        if opt.kind == "choice":
            assert opt.default in opt.choices
    envs = [e for o in OPTIONS for e in o.env_names]
    assert len(envs) == len(set(envs)), "an environment name is used twice"


def test_defaults_ignore_environment(clean_env):
    clean_env.setenv("HAKMEM_SS_MEM_LEAN", "1")
    clean_env.setenv("SIMALLOC_FRONT_REFILL_BATCH", "8")
    assert Config.defaults() == Config()
    cfg = Config.from_env()
    assert cfg.mem_lean and cfg.front_refill_batch == 8
    assert Config.from_env({}) == Config()


def test_hakmem_names(kernel):
    cfg = Config.from_env({
        "HAKMEM_SS_MEM_LEAN": "1",
        "HAKMEM_SS_MEM_LEAN_DECOMMIT": "DONTNEED",
        "HAKMEM_SS_MEM_LEAN_TARGET_MB": "32",
        "HAKMEM_TINY_SS_FORCE_LG": "20",
        "HAKMEM_SUPERSLAB_MAX_CACHED": "7",
        "HAKMEM_SUPERSLAB_MAX_MEMORY_MB": "64",
        "HAKMEM_SUPERSLAB_TTL_SEC": "2.5",
        "HAKMEM_PREWARM_SUPERSLABS": "3",
        "HAKMEM_TINY_PREWARM_C2": "5",
        "HAKMEM_SS_OS_STATS": "1",
        "UNRELATED": "x",
    }, kernel=kernel)
    assert cfg.mem_lean is True and cfg.mem_lean_decommit == "DONTNEED"
    assert cfg.mem_lean_target_mb == 32 and cfg.ss_lg == 20
    assert cfg.ss_max_cached == 7 and cfg.ss_max_memory_mb == 64 and cfg.ss_ttl_sec == 2.5
    assert cfg.prewarm_superslabs == 3 and cfg.tiny_prewarm_c2 == 5 and cfg.os_stats is True
    assert cfg.kernel == kernel
    assert set(cfg.diff()) == {"mem_lean", "mem_lean_decommit", "mem_lean_target_mb", "ss_lg",
                               "ss_max_cached", "ss_max_memory_mb", "ss_ttl_sec",
                               "prewarm_superslabs", "tiny_prewarm_c2", "os_stats"} | (
        {"kernel"} if kernel != "auto" else set())


def test_simalloc_names_and_precedence():
    assert Config.from_env({"SIMALLOC_MEM_LEAN": "yes"}).mem_lean is True
    # both set: the SIMALLOC_ name wins, whichever order the mapping has
    for env in ({"HAKMEM_SS_MEM_LEAN": "1", "SIMALLOC_MEM_LEAN": "0"},
                {"SIMALLOC_MEM_LEAN": "0", "HAKMEM_SS_MEM_LEAN": "1"}):
        assert Config.from_env(env).mem_lean is False
    env = {"HAKMEM_SS_MEM_LEAN_TARGET_MB": "5", "SIMALLOC_MEM_LEAN_TARGET_MB": "6"}
    assert Config.from_env(env).mem_lean_target_mb == 6
    # an empty variable counts as unset
    assert Config.from_env({"HAKMEM_SS_MEM_LEAN": "1", "SIMALLOC_MEM_LEAN": ""}).mem_lean is True
    # overrides beat the environment, by option name or by environment name
    assert Config.from_env({"HAKMEM_SS_MEM_LEAN": "1"}, mem_lean=False).mem_lean is False
    assert Config.from_env({}, HAKMEM_SS_MEM_LEAN="1").mem_lean is True
    assert Config.defaults(SIMALLOC_FRONT_CACHE_CAP="32").front_cache_cap == 32


@pytest.mark.parametrize(("raw", "want"), [
    ("1", True), ("0", False), ("true", True), ("FALSE", False), ("Yes", True), ("no", False),
    ("on", True), ("OFF", False), (" 1 ", True),
])
def test_bool_parsing(raw, want):
    assert Config.from_env({"HAKMEM_SS_MEM_LEAN": raw}).mem_lean is want


def test_bool_python_values():
    assert Config.defaults(mem_lean=True).mem_lean is True
    assert Config.defaults(mem_lean=1).mem_lean is True
    assert Config.defaults(mem_lean=0).mem_lean is False
    with pytest.raises(ConfigError):
        Config.defaults(mem_lean=2)


@pytest.mark.parametrize(("raw", "want"), [
    ("65536", 65536), ("64k", 65536), ("64K", 65536), ("1M", 1 << 20), ("1g", 1 << 30),
    ("0x100", 256), ("0", 0),
])
def test_size_suffix_parsing(raw, want):
    assert Config.from_env({"SIMALLOC_TICK_INTERVAL_OPS": raw}).tick_interval_ops == want


def test_float_parsing():
    assert Config.from_env({"HAKMEM_SUPERSLAB_TTL_SEC": "0.25"}).ss_ttl_sec == 0.25
    assert Config.from_env({"HAKMEM_SUPERSLAB_TTL_SEC": "1k"}).ss_ttl_sec == 1024.0


@pytest.mark.parametrize(("name", "raw"), [
    ("HAKMEM_SS_MEM_LEAN", "banana"),
    ("HAKMEM_SS_MEM_LEAN", "2"),
    ("SIMALLOC_MEM_LEAN", "maybe"),
    ("HAKMEM_SS_MEM_LEAN_DECOMMIT", "MAYBE"),
    ("HAKMEM_SS_MEM_LEAN_DECOMMIT", "madv_free"),
    ("HAKMEM_SS_MEM_LEAN_TARGET_MB", "-1"),
    ("HAKMEM_SS_MEM_LEAN_TARGET_MB", "ten"),
    ("HAKMEM_SS_MEM_LEAN_TARGET_MB", "1.5"),
    ("HAKMEM_TINY_SS_FORCE_LG", "19"),
    ("HAKMEM_TINY_SS_FORCE_LG", "22"),
    ("HAKMEM_TINY_MAX_CLASS", "8"),
    ("HAKMEM_SUPERSLAB_TTL_SEC", "soon"),
    ("SIMALLOC_KERNEL", "fortran"),
    ("SIMALLOC_DEBUG", "4"),
    ("SIMALLOC_FRONT_CACHE_CAP", "1k5"),
])
def test_invalid_values_name_the_variable(name, raw):
    with pytest.raises(ConfigError) as info:
        Config.from_env({name: raw})
    assert name in str(info.value)
    assert isinstance(info.value, simalloc.AllocatorError) and isinstance(info.value, ValueError)


def test_mem_lean_banana():
    with pytest.raises(ConfigError, match="HAKMEM_SS_MEM_LEAN"):
        Config.from_env({"HAKMEM_SS_MEM_LEAN": "banana"})


def test_decommit_choice_case_insensitive():
    for raw in ("dontneed", "DontNeed", "DONTNEED"):
        assert Config.from_env({"HAKMEM_SS_MEM_LEAN_DECOMMIT": raw}).mem_lean_decommit == "DONTNEED"
    assert Config.from_env({"HAKMEM_SS_MEM_LEAN_DECOMMIT": "off"}).mem_lean_decommit == "OFF"
    with pytest.raises(ConfigError, match="HAKMEM_SS_MEM_LEAN_DECOMMIT"):
        Config.from_env({"HAKMEM_SS_MEM_LEAN_DECOMMIT": "sometimes"})


def test_unknown_override_name():
    with pytest.raises(ConfigError, match="no_such_option"):
        Config.defaults(no_such_option=1)
    with pytest.raises(ConfigError, match="HAKMEM_NOPE"):
        Config.from_env({}, HAKMEM_NOPE="1")
    with pytest.raises(ConfigError, match="bogus"):
        Config().replace(bogus=3)
    with pytest.raises(ConfigError):
        simalloc.Heap(Config.defaults(kernel="python"), bogus=3)


def test_replace_and_cross_field_rules():
    cfg = Config.defaults(mem_lean=True)
    cfg2 = cfg.replace(HAKMEM_SS_MEM_LEAN_TARGET_MB="3", front_cache_cap=8, front_drain_batch=4)
    assert cfg2.mem_lean and cfg2.mem_lean_target_mb == 3 and cfg2.front_cache_cap == 8
    assert cfg.mem_lean_target_mb == 10  # frozen original untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mem_lean = False  # type: ignore[misc]
    with pytest.raises(ConfigError, match="front_drain_batch"):
        Config.defaults(front_cache_cap=4, front_drain_batch=8)
    with pytest.raises(ConfigError):
        Config(ss_lg=19).validate()


def test_prewarm_counts():
    assert Config().prewarm_counts() == {2: 128, 3: 128, 4: 64, 5: 64}
    assert Config.from_env({"HAKMEM_TINY_PREWARM_ALL": "7"}).prewarm_counts() == dict.fromkeys(
        (2, 3, 4, 5), 7)
    assert Config.defaults(tiny_prewarm_c4=1).prewarm_counts()[4] == 1


def test_dump_lists_every_option():
    cfg = Config.defaults(mem_lean=True)
    text = cfg.dump()
    lines = text.splitlines()
    assert len(lines) == len(OPTIONS) + 1  # header + one line per option
    for opt, line in zip(OPTIONS, lines[1:], strict=True):
        assert line.startswith(opt.name)
        for env in opt.env_names:
            assert env in line
    lean_line = next(line for line in lines if line.startswith("mem_lean "))
    assert "*" in lean_line.split()[0] + lean_line.split()[1]  # changed values are marked
    assert cfg.as_dict()["mem_lean"] is True and cfg.diff() == {"mem_lean": True}


# ---------------------------------------------------------------- policy selection


def test_policy_auto_fast_lean_slab_purge():
    assert type(make_policy(Config())) is FastPolicy
    lean = make_policy(Config.defaults(mem_lean=True, mem_lean_decommit="DONTNEED",
                                       mem_lean_target_mb=3, lean_retire="unmap"))
    assert isinstance(lean, LeanPolicy)
    assert (lean.decommit, lean.target_bytes, lean.retire) == ("DONTNEED", 3 << 20, "unmap")
    assert "lean" in lean.describe() and "DONTNEED" in lean.describe()
    assert type(make_policy(Config.defaults(policy="fast", mem_lean=True))) is FastPolicy
    assert isinstance(make_policy(Config.defaults(policy="lean")), LeanPolicy)
    assert isinstance(make_policy(Config.defaults(policy=" slab-purge ")), DelayedSlabPurgePolicy)
    assert not make_policy(Config.defaults(policy="lean")).allow_prewarm()
    assert make_policy(Config()).allow_prewarm()


def test_policy_module_class(monkeypatch, tmp_path):
    assert type(make_policy(Config.defaults(policy="simalloc.policy:FastPolicy"))) is FastPolicy
    (tmp_path / "my_pol_mod.py").write_text(
        "from simalloc import ReleasePolicy, Release\n"
        "class Unmapper(ReleasePolicy):\n"
        "    name = 'unmapper'\n"
        "    def on_superslab_empty(self, ctx, ev):\n"
        "        return Release.unmap()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pol = make_policy(Config.from_env({"SIMALLOC_POLICY": "my_pol_mod:Unmapper"}))
    assert isinstance(pol, ReleasePolicy) and pol.describe() == "unmapper"


@pytest.mark.parametrize("bad", [
    "nonsense", "LEANER", "", "no_such_module_xyz:Policy", "simalloc.policy:NoSuchClass",
    "builtins:dict", "simalloc.policy:Release",
])
def test_policy_bad_values(bad):
    with pytest.raises(ConfigError, match="SIMALLOC_POLICY"):
        make_policy(Config.defaults(policy=bad))


def test_policy_bad_value_fails_heap_construction(kernel):
    with pytest.raises(ConfigError, match="SIMALLOC_POLICY"):
        simalloc.Heap(Config.defaults(kernel=kernel, policy="nonsense"))


def test_heap_policy_string_override(make_heap):
    heap = make_heap(policy="slab-purge")
    assert isinstance(heap.policy, DelayedSlabPurgePolicy)
    heap2 = simalloc.Heap(Config.defaults(kernel=heap.config.kernel), policy="lean")
    try:
        assert isinstance(heap2.policy, LeanPolicy)
        assert heap2.config.policy == "lean"
    finally:
        heap2.close()


def test_heap_from_environment(clean_env, kernel):
    clean_env.setenv("HAKMEM_SS_MEM_LEAN", "1")
    clean_env.setenv("HAKMEM_SS_MEM_LEAN_DECOMMIT", "DONTNEED")
    clean_env.setenv("SIMALLOC_KERNEL", kernel)
    with simalloc.Heap() as heap:
        assert heap.config.mem_lean and heap.kernel_name == kernel
        assert isinstance(heap.policy, LeanPolicy) and heap.policy.decommit == "DONTNEED"
    clean_env.setenv("HAKMEM_SS_MEM_LEAN", "banana")
    with pytest.raises(ConfigError, match="HAKMEM_SS_MEM_LEAN"):
        simalloc.Heap()


def test_kernel_selection():
    assert simalloc.kernel_name("python") == "python"
    assert "python" in simalloc.available_kernels()
    with pytest.raises(ConfigError):
        simalloc.kernel_name("fortran")
    if "cython" not in simalloc.available_kernels():
        with pytest.raises(ConfigError, match="SIMALLOC_KERNEL"):
            simalloc.Heap(Config.defaults(kernel="cython"))


def test_heap_policy_argument_type(kernel):
    with pytest.raises(TypeError, match="ReleasePolicy"):
        simalloc.Heap(Config.defaults(kernel=kernel), policy=object())
    with pytest.raises(TypeError):
        simalloc.Heap(Config.defaults(kernel=kernel), policy=FastPolicy)  # the class, not one
