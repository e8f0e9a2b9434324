"""`mentorship import` against a real nats-server and pairing: the sample roster registers
everyone; a roster with bad rows still registers the good ones and names the bad lines."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sqlalchemy import func, select

from services.pairing import store
from services.pairing.app import definition
from tests.support.waiting import eventually, running, settings_for

SAMPLE = Path(__file__).parents[2] / "docs" / "samples" / "roster.csv"


async def mentorship(tmp_path: Path, nats_url: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "MENTORSHIP_NATS_URL": nats_url,
           "MENTORSHIP_DATA_DIR": str(tmp_path / "cli")}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("mentorship")), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_import_registers_the_good_rows_and_reports_each_bad_line(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "roster.csv"
    # line 3 (ben-okafor) loses its timezone, line 7 (fatima-said) gets a bad email
    lines[2] = lines[2].replace("Europe/London", "")
    lines[6] = lines[6].replace("fatima.said@example.org", "fatima")
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    async with running(definition(), settings) as rt:

        async def stored(program: str, n: int) -> bool:
            async with rt.sessions() as session:
                count = await session.scalar(
                    select(func.count())
                    .select_from(store.Participant)
                    .where(store.Participant.program_id == program)
                )
            return count == n

        code, out, err = await mentorship(
            tmp_path, nats_server.url, "import", str(SAMPLE), "--program", "sample"
        )
        assert code == 0, err
        assert "published 8 participant.registered for sample; 0 bad row(s)" in out
        assert "publishing [" in err and "8/8" in err  # the progress bar
        await eventually(lambda: stored("sample", 8), what="8 participants of the sample")

        code, out, err = await mentorship(
            tmp_path, nats_server.url, "import", str(broken), "--program", "hr"
        )
        assert code == 1
        assert f"{broken}:3: skipped: missing timezone" in err
        assert f"{broken}:7: skipped: email" in err
        assert "published 6 participant.registered for hr; 2 bad row(s)" in out
        await eventually(lambda: stored("hr", 6), what="the 6 good rows")
        async with rt.sessions() as session:
            ids = set(
                await session.scalars(
                    select(store.Participant.participant_id).where(
                        store.Participant.program_id == "hr"
                    )
                )
            )
        assert "ben-okafor" not in ids and "fatima-said" not in ids
