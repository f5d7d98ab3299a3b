"""The built-in campus scenario: reproducible from the Alibaba trace, and a campus whose jobs come
and go (queued jobs on one GPU pool, two events, one with no notice)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from gridflex.sim.campus import NAME, render
from gridflex.sim.scenarios import load_scenario

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "alibaba-gpu-2023").is_dir(), reason="../shared/data is not beside the checkout")
def test_the_files_are_what_the_generator_writes():
    folder = resources.files("gridflex.data").joinpath("scenarios")
    scenario, jobs = render(SHARED)
    assert folder.joinpath(f"{NAME}.yaml").read_text() == scenario
    assert folder.joinpath(f"{NAME}-jobs.csv").read_text() == jobs


def test_a_campus_of_at_least_10000_gpus_whose_jobs_come_and_go():
    sc = load_scenario(NAME).scenario
    pool = sc.site.gpu_pools["A100"].gpus
    assert pool >= 10_000
    submit = np.array([j.submit.timestamp() - sc.start.timestamp() for j in sc.jobs])
    assert len(sc.jobs) > 5000 and (submit > 0).mean() > 0.5  # most jobs arrive during the day
    assert {j.workload for j in sc.jobs} >= {"infer_llama_8b", "pt_mpt_7b_fast", "ft_llama_8b_p3"}
    assert [e.notice_s for e in sc.events] == [86400, 0]
