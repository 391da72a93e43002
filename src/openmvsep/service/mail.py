"""Sending the few mails this server sends (account verification), through the SMTP server the settings name."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import urlsplit

from openmvsep.service.errors import ServiceError
from openmvsep.settings import Settings


class MailNotSent(ServiceError):
    status = 503


def sender(settings: Settings) -> str:
    return settings.smtp_from or f"openmvsep@{urlsplit(settings.effective_public_url).hostname or 'localhost'}"


def send_mail(settings: Settings, to: str, subject: str, body: str) -> None:
    """One plain-text mail; MailNotSent when the server cannot be reached or refuses it."""
    if not settings.smtp_host:
        raise MailNotSent("This server has no mail server configured")
    message = EmailMessage()
    message["From"] = sender(settings)
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    timeout = settings.smtp_timeout_seconds
    try:
        if settings.smtp_security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.smtp_host, settings.smtp_port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
        with smtp:
            if settings.smtp_security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password)
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as e:  # OSError: refused, unreachable, timed out, TLS failures
        raise MailNotSent(f"The e-mail to {to} could not be sent; please try again later") from e
