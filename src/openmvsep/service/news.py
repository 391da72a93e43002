"""News entries, served by app/news and written by `openmvsep news add`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from openmvsep.service.accounts import fmt_datetime
from openmvsep.store.db import utcnow
from openmvsep.store.models import News


def add_news(s: Session, title: str, text: str, lang: str = "en") -> News:
    now = utcnow()
    item = News(title=title, text=text, lang=lang, status=1, created_at=now, updated_at=now)
    s.add(item)
    s.flush()
    return item


def list_news(s: Session, lang: str, start: int, limit: int) -> list[dict]:
    rows = s.scalars(select(News).where(News.lang == lang, News.status == 1).order_by(News.id.desc())
                     .offset(start).limit(limit)).all()
    return [{"id": n.id, "title": n.title, "lang": n.lang, "text": n.text, "status": n.status,
             "created_at": fmt_datetime(n.created_at), "updated_at": fmt_datetime(n.updated_at)} for n in rows]
