"""The prepared-cluster cache: any input change is a new entry, a damaged entry is rebuilt,
and a command served from the cache answers exactly as a cold one."""
from __future__ import annotations

import shutil
from pathlib import Path

from tracer.cli import main
from tracer.trace.cache import SUFFIX, cache_key, load_prepared

import bundled

SCENARIO = bundled.SCENARIO_ROOT / "backend-from-frontend"
PACKET = ["packet", "-f", str(SCENARIO), "--from", "myns/other", "--to", "myns/backend",
          "--protocol", "tcp", "--port", "6379", "--verbosity", "summary"]


def copy_scenario(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SCENARIO, tmp_path / "scenario"))


def test_the_key_follows_every_input(tmp_path):
    scenario = copy_scenario(tmp_path)
    key = cache_key([scenario], None)
    assert cache_key([scenario], None) == key
    assert cache_key([scenario], "3.26") != key
    policy = scenario / "policy.yaml"
    policy.write_text(policy.read_text() + "\n# one more byte\n")
    assert cache_key([scenario], None) != key


def test_second_load_is_a_hit_and_equal(tmp_path):
    cold, hit = load_prepared([SCENARIO], cache_dir=tmp_path)
    assert not hit
    warm, hit = load_prepared([SCENARIO], cache_dir=tmp_path)
    assert hit
    assert sorted(warm.cluster.pods) == sorted(cold.cluster.pods)
    assert sorted(warm.cluster.policies) == sorted(cold.cluster.policies)


def test_a_damaged_entry_is_rebuilt(tmp_path):
    load_prepared([SCENARIO], cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*" + SUFFIX)
    entry.write_bytes(entry.read_bytes()[:100])
    prepared, hit = load_prepared([SCENARIO], cache_dir=tmp_path)
    assert not hit and prepared.cluster.pods
    assert load_prepared([SCENARIO], cache_dir=tmp_path)[1]


def test_packet_from_the_cache_answers_as_cold(tmp_path, capsys):
    def run(*extra):
        try:
            main(PACKET + list(extra))
        except SystemExit as done:
            assert done.code in (0, None, 1), capsys.readouterr().err
        return capsys.readouterr()

    cold = run("--no-cache")
    filled = run("--cache", str(tmp_path), "--verbose")
    warm = run("--cache", str(tmp_path), "--verbose")
    assert "cache miss" in filled.err and "cache hit" in warm.err
    assert cold.out == filled.out == warm.out and "DROP" in cold.out.upper()
