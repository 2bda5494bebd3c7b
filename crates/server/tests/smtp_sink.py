"""An SMTP server for the notifier's e-mail tests, on Debian's aiosmtpd.

The aiosmtpd command line can neither authenticate nor take a TLS certificate, so the tests
start this script (with Debian's /usr/bin/python3) instead. It listens on 127.0.0.1:PORT and
writes every message it accepts to OUT_DIR/<n>.json as
{"user", "mechanism", "tls", "mail_from", "rcpt_tos", "content"}; the file appears whole
(written aside, then renamed). It runs until it is killed.

  smtp_sink.py PORT OUT_DIR [--tls CERT KEY] [--user NAME PASSWORD] [--only MECHANISM]

--tls offers STARTTLS with that certificate and requires it before anything else;
--user requires AUTH (after STARTTLS) and accepts only that name and password;
--only offers that one AUTH mechanism (PLAIN or LOGIN) instead of both.
"""

import argparse
import itertools
import json
import os
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    """Writes each accepted message, with who sent it and how, to a JSON file."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.numbers = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        n = next(self.numbers)
        login = session.auth_data.login.decode() if session.auth_data else None
        record = {
            "user": login,
            "mechanism": getattr(session, "mechanism", None),
            "tls": session.ssl is not None,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "content": envelope.content.decode("utf-8", "replace"),
        }
        tmp = os.path.join(self.out_dir, f".{n}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.out_dir, f"{n}.json"))
        return "250 Message accepted for delivery"


def authenticator(user, password):
    """Accepts exactly one name and password, and notes the mechanism on the session."""

    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        if ok:
            session.mechanism = mechanism
        # handled=False: aiosmtpd answers (235, or 535 for a wrong password) itself
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return check


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("out_dir")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--user", nargs=2, metavar=("NAME", "PASSWORD"))
    p.add_argument("--only", choices=["PLAIN", "LOGIN"])
    a = p.parse_args()

    kwargs = {}
    if a.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.tls[0], a.tls[1])
        kwargs.update(tls_context=ctx, require_starttls=True)
    if a.user:
        kwargs.update(auth_required=True, authenticator=authenticator(*a.user))
    if a.only:
        kwargs["auth_exclude_mechanism"] = [m for m in ("PLAIN", "LOGIN") if m != a.only]
    controller = Controller(
        Sink(a.out_dir),
        hostname="127.0.0.1",
        port=a.port,
        server_hostname="sink.ocelli.test",
        **kwargs,
    )
    controller.start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
