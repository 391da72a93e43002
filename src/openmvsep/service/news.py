"""News entries, served by app/news and written by `openmvsep news add`."""

from __future__ import annotations

from sqlalchemy import select

from openmvsep.service.accounts import fmt_datetime
from openmvsep.service.errors import NotFound
from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import News


class NewsService:
    def __init__(self, db: Database):
        self.db = db

    def add(self, title: str, text: str, lang: str = "en") -> News:
        now = utcnow()
        with self.db.session() as s:
            item = News(title=title, text=text, lang=lang, status=1, created_at=now, updated_at=now)
            s.add(item)
            s.flush()
            return item

    def list(self, lang: str, start: int, limit: int) -> list[dict]:
        with self.db.reader() as s:
            rows = s.scalars(
                select(News)
                .where(News.lang == lang, News.status == 1)
                .order_by(News.id.desc())
                .offset(start)
                .limit(limit)
            ).all()
            return [_payload(n) for n in rows]

    def get(self, news_id: int) -> dict:
        """One published entry (the web page's `/news/<id>`); NotFound for a missing or unpublished one."""
        with self.db.reader() as s:
            item = s.get(News, news_id)
            if item is None or item.status != 1:
                raise NotFound("News entry not found")
            return _payload(item)


def _payload(n: News) -> dict:
    return {
        "id": n.id,
        "title": n.title,
        "lang": n.lang,
        "text": n.text,
        "status": n.status,
        "created_at": fmt_datetime(n.created_at),
        "updated_at": fmt_datetime(n.updated_at),
    }
