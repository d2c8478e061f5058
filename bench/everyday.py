"""What the everyday details cost: reading typed dates, showing dates with
Babel, splitting long posts, and enqueuing a long post (two messages per
family) against a short one.

Run from the repository root:

    .venv/bin/python bench/everyday.py            # 2,000 parents
    .venv/bin/python bench/everyday.py --quick    # 300 parents

Every figure is a ratio against a baseline measured in the same run:
- reading: bot.dates.read on a mix of ru/en inputs vs datetime.strptime of
  "25.12.2026 18:30" (what the bot understood before);
- showing: bot.dates.when vs strftime("%d.%m.%Y %H:%M");
- splitting: bot.split.split_html of an 8,000-character text (two parts) vs
  visible_length of the same text (one pass over it with a regex);
- enqueuing: bot.posts.broadcast of a post that goes out in two messages vs
  one of about the same length that fits in one (and a short one), to the
  same parents (SQLite file, one transaction each, best of three).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot import dates  # noqa: E402
from bot.i18n import create_i18n, in_locale  # noqa: E402
from bot.posts import broadcast, visible_length  # noqa: E402
from bot.split import split_html  # noqa: E402

INPUTS = ["завтра 18:30", "пт 9:00", "25 декабря 10:00", "25.12 10:00", "18:30", "tomorrow 6:30 pm",
          "fri 9:00", "Dec 25 10:00", "25.12.2026 18:30", "31.02 10:00"]
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def per_second(fn, seconds: float = 0.5) -> float:  # type: ignore[no-untyped-def]
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def micro() -> None:
    def read() -> None:
        for text in INPUTS:
            dates.read(text, "Europe/Moscow", NOW)

    def strptime() -> None:
        for _ in INPUTS:
            datetime.strptime("25.12.2026 18:30", "%d.%m.%Y %H:%M")

    r_new, r_old = per_second(read) * len(INPUTS), per_second(strptime) * len(INPUTS)
    print(f"reading:   {r_new:>10,.0f} texts/s   strptime {r_old:>10,.0f}/s   ratio {r_new / r_old:.3f}")
    moment = datetime(2026, 12, 25, 15, 30, tzinfo=timezone.utc)
    with create_i18n("ru").context(), in_locale("ru"):
        s_new = per_second(lambda: dates.when(moment, "Europe/Moscow", now=NOW))
    s_old = per_second(lambda: moment.strftime("%d.%m.%Y %H:%M"))
    print(f"showing:   {s_new:>10,.0f} dates/s   strftime {s_old:>10,.0f}/s   ratio {s_new / s_old:.3f}")
    text = "\n\n".join(f"{i}. " + "слово " * 60 for i in range(22))  # about 8,000 characters: two parts
    p_new = per_second(lambda: split_html(text, 4096))
    p_old = per_second(lambda: visible_length(text))
    print(f"splitting: {p_new:>10,.0f} posts/s   one pass {p_old:>8,.0f}/s   ratio {p_new / p_old:.3f}"
          f"   ({len(split_html(text, 4096))} parts of {visible_length(text)} characters)")


async def enqueue(parents: int) -> None:
    from sqlalchemy import delete

    from storage.models import Delivery, Post, PostGroup, PostState, utcnow
    from storage.repo import Repo
    from tests.seed import create_database, seed_school

    with tempfile.TemporaryDirectory() as tmp:
        engine, session_maker = await create_database(f"sqlite+aiosqlite:///{tmp}/bench.db")
        school = await seed_school(session_maker, parents=parents)
        body = "\n\n".join(f"{i}. " + "слово " * 60 for i in range(11))
        one = body[:3900]  # with the heading and signature: one message of about 3,950 characters
        two = body + "\n\n" + "конец " * 10  # 4,090 characters: with them, two messages
        timings = {}
        with create_i18n("ru").context():
            for label, text in (("short", "Завтра <b>субботник</b>"), ("one", one), ("long", two)):
                best = float("inf")
                for _ in range(3):
                    async with session_maker.begin() as session:
                        repo = Repo(session)
                        org = await repo.organisation(school.org_id)
                        post = Post(org_id=org.id, author_id=school.teacher_person_id, kind="announcement",  # type: ignore[union-attr]
                                    audience="groups", to_parents=True, to_students=False, text=text, ask_ack=True,
                                    state=PostState.SENT.value, created_at=utcnow())
                        post.groups = [PostGroup(org_id=org.id, group_id=school.group_id)]  # type: ignore[union-attr]
                        post = await repo.add_post(post)
                        people = await repo.post_recipients(post, [school.group_id])
                        start = time.perf_counter()
                        await broadcast(repo, post, people, org=org, author_name="Анна", audience="5А",  # type: ignore[arg-type]
                                        default_locale="ru")
                        await session.flush()
                        best = min(best, time.perf_counter() - start)
                    async with session_maker.begin() as session:
                        await session.execute(delete(Delivery))
                timings[label] = best
        await engine.dispose()
    short, one, long = timings["short"], timings["one"], timings["long"]
    print(f"enqueuing: short post {parents / short:>8,.0f} families/s; 3,950 characters in one message"
          f" {parents / one:>8,.0f}/s; 4,100 in two messages {parents / long:>8,.0f}/s")
    print(f"           time ratio two messages / one message of about the same text {long / one:.3f}"
          f" (rows ratio 2.000); one long message / short {one / short:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    micro()
    asyncio.run(enqueue(300 if args.quick else 2000))


if __name__ == "__main__":
    main()
