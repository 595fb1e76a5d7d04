"""A sidecar's certificate lifecycle: bootstrap, renewal, and the gateway's HTTPS certificate.

1. ``read_bootstrap_token``: the supervisor passed a one-time token through an
   inherited pipe whose descriptor is named by ``MESHKIT_BOOTSTRAP_FD``; it is
   read once and the descriptor closed.  The SPIFFE ID to ask for is in
   ``MESHKIT_IDENTITY`` (not a secret).
2. ``SidecarIdentity.bootstrap``: make a key in memory (never written to disk,
   never sent), send a CSR with the token to ``POST
   /v1/instances/<id>/certificate``, build the TLS contexts.  This happens
   before the sidecar subscribes to its config.
3. ``SidecarIdentity.renew_forever``: a task driven by
   ``meshkit.ca.renewal.RenewalSchedule`` (half-life with jitter, capped
   backoff on failure, retried for as long as the sidecar lives: a stopped
   control plane never ends it, and peers accept a just-expired certificate
   for ``EXPIRY_GRACE``).  A renewal uses a fresh key, authorised by the
   current certificate and a signature of the new CSR with the current key.
   On success the contexts are replaced as a whole (``on_renewed``): new
   connections use the new certificate, open ones keep theirs.
4. ``gateway_https_context``: the gateway's serving certificate for
   ``localhost`` and ``127.0.0.1``, with a key of its own, authorised by the
   current SVID; renewed after each SVID renewal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import time
from collections.abc import Callable, MutableMapping

import trio
from cryptography import x509

from meshkit.api.backoff import CONTROL_PLANE_BACKOFF, BackoffCounter
from meshkit.api.control import ControlClient, ControlPlaneError, error_text
from meshkit.ca.errors import CaError
from meshkit.ca.exchange import (
    BOOTSTRAP_FD_ENV,
    IDENTITY_ENV,
    bootstrap_request_body,
    gateway_request_body,
    parse_certificate_answer,
    renewal_request_body,
)
from meshkit.ca.issuer import DEFAULT_GATEWAY_HOSTS
from meshkit.ca.renewal import RenewalSchedule
from meshkit.ca.spiffe import EXPIRY_GRACE
from meshkit.ca.tls import SIDECAR_SERVER_ALPN, MeshTlsContexts, gateway_server_context
from meshkit.ca.workload import (
    PrivateKey,
    generate_key,
    make_csr,
    make_serving_csr,
    renewal_proof,
)

log = logging.getLogger("meshkit.proxy")

__all__ = [
    "IDENTITY_ENV",
    "CertificateRequestRefused",
    "IdentityError",
    "SidecarIdentity",
    "read_bootstrap_token",
]

MAX_TOKEN_BYTES = 4096
BOOTSTRAP_PATIENCE = 30.0
REQUEST_TIMEOUT = 10.0
# The gateway's HTTPS port selects h2 when a client offers it, as sidecars do.
GATEWAY_HTTPS_ALPN = SIDECAR_SERVER_ALPN

Clock = Callable[[], float]


class IdentityError(Exception):
    """The sidecar could not get (or keep) its certificate; the message says why."""


def read_bootstrap_token(environ: MutableMapping[str, str]) -> str | None:
    """The token from the pipe named by ``MESHKIT_BOOTSTRAP_FD`` (removed from ``environ``).

    None when the variable is absent (a sidecar started without identity).
    The descriptor is closed whatever happens.
    """
    fd_text = environ.pop(BOOTSTRAP_FD_ENV, None)
    if fd_text is None:
        return None
    try:
        descriptor = int(fd_text)
    except ValueError:
        raise IdentityError(f"{BOOTSTRAP_FD_ENV}={fd_text!r} is not a file descriptor") from None
    chunks: list[bytes] = []
    try:
        while sum(map(len, chunks)) <= MAX_TOKEN_BYTES:
            chunk = os.read(descriptor, MAX_TOKEN_BYTES)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as error:
        raise IdentityError(
            f"cannot read the bootstrap token from descriptor {descriptor}: {error.strerror}"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            os.close(descriptor)
    token = b"".join(chunks).decode("ascii", errors="replace").strip()
    if not token or len(token) > MAX_TOKEN_BYTES:
        raise IdentityError(f"descriptor {descriptor} held no usable bootstrap token")
    return token


def _not_after(cert_pem: bytes) -> float:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc.timestamp()


class CertificateRequestRefused(IdentityError):
    """The control plane answered a certificate request with 4xx (do not retry blindly)."""


class SidecarIdentity:
    """The sidecar's key, certificate and the TLS contexts built from them."""

    def __init__(
        self,
        *,
        spiffe_id: str,
        control: ControlClient,
        clock: Clock = time.time,
        schedule: RenewalSchedule | None = None,
    ) -> None:
        self.spiffe_id = spiffe_id
        self.control = control
        self.clock = clock
        self.schedule = schedule if schedule is not None else RenewalSchedule(clock=clock)
        self.contexts: MeshTlsContexts | None = None
        self.gateway_context: ssl.SSLContext | None = None
        self._key: PrivateKey | None = None
        self._cert_pem = b""
        self._root_pem = b""
        self._wants_gateway_certificate = False

    @property
    def state(self) -> str:
        """``ok``, ``renewing``, ``failing: <reason>``, ``expired`` or ``no certificate``."""
        return self.schedule.state

    async def _request(self, body: dict[str, str]) -> tuple[bytes, bytes]:
        with trio.move_on_after(REQUEST_TIMEOUT):
            status, answer = await self.control.request_certificate(body)
            if status == 200 and isinstance(answer, dict):
                try:
                    return parse_certificate_answer(answer)
                except CaError as error:
                    raise ControlPlaneError(f"unreadable certificate answer: {error}") from None
            reason = error_text(answer)
            if 400 <= status < 500:
                raise CertificateRequestRefused(f"refused ({status}): {reason}")
            raise ControlPlaneError(f"certificate request answered {status}: {reason}")
        raise ControlPlaneError(f"certificate request got no answer within {REQUEST_TIMEOUT:g}s")

    def _install(self, key: PrivateKey, cert_pem: bytes, root_pem: bytes) -> MeshTlsContexts:
        try:
            contexts = MeshTlsContexts.build(
                cert_pem, key, root_pem, server_alpn=SIDECAR_SERVER_ALPN
            )
        except (CaError, ValueError, ssl.SSLError) as error:
            raise IdentityError(f"the issued certificate is unusable: {error}") from None
        if contexts.identity != self.spiffe_id:
            raise IdentityError(
                f"the control plane issued a certificate for {contexts.identity}, "
                f"not {self.spiffe_id}"
            )
        self._key, self._cert_pem, self._root_pem = key, cert_pem, root_pem
        self.contexts = contexts
        self.schedule.certificate_installed(not_after=_not_after(cert_pem))
        return contexts

    async def bootstrap(self, token: str, *, patience: float = BOOTSTRAP_PATIENCE) -> None:
        """Get the first certificate with ``token``; ``IdentityError`` if impossible.

        An unreachable control plane is retried with backoff for ``patience``
        seconds; a refusal (403: used or foreign token, wrong identity) is final.
        """
        key = generate_key()
        body = bootstrap_request_body(make_csr(key, self.spiffe_id), token)
        backoff = BackoffCounter(CONTROL_PLANE_BACKOFF)
        with trio.move_on_after(patience):
            while True:
                try:
                    cert_pem, root_pem = await self._request(body)
                    break
                except ControlPlaneError as error:
                    log.warning("certificate for %s: %s; retrying", self.spiffe_id, error)
                    await trio.sleep(backoff.next_delay())
                except CertificateRequestRefused as refused:
                    raise IdentityError(
                        f"the control plane refused a certificate for {self.spiffe_id}: {refused}"
                    ) from None
            contexts = self._install(key, cert_pem, root_pem)
            log.info(
                "%s: certificate for %s valid until %s",
                self.control.instance,
                contexts.identity,
                contexts.not_after.strftime("%Y-%m-%d %H:%M:%S UTC"),
            )
            return
        raise IdentityError(f"no certificate for {self.spiffe_id} after {patience:g}s")

    async def renew_once(self) -> MeshTlsContexts:
        """One renewal attempt with a fresh key; raises ``IdentityError`` or ``ControlPlaneError``."""
        if self._key is None:
            raise IdentityError("cannot renew before the first certificate")
        new_key = generate_key()
        csr_pem = make_csr(new_key, self.spiffe_id)
        body = renewal_request_body(csr_pem, self._cert_pem, renewal_proof(self._key, csr_pem))
        cert_pem, root_pem = await self._request(body)
        return self._install(new_key, cert_pem, root_pem)

    def _serving_what(self) -> str:
        if self.contexts is None:
            return "no certificate yet"
        late = self.clock() - self.contexts.not_after.timestamp()
        if late < 0:
            return "still serving the current one"
        return (
            f"serving the one that expired {late:.0f}s ago "
            f"(peers accept it for {EXPIRY_GRACE:g}s past expiry)"
        )

    async def renew_forever(
        self,
        *,
        on_renewed: Callable[[MeshTlsContexts], None],
        on_unrenewable: Callable[[], None],
    ) -> None:
        """Renew per the schedule until cancelled; ``on_unrenewable`` once the control
        plane refuses to renew an expired certificate (only a fresh bootstrap helps)."""
        while True:
            delay = self.schedule.delay_until_next_attempt()
            if delay is None:
                log.error(
                    "%s: certificate for %s expired and the control plane refuses to renew it: "
                    "%s",
                    self.control.instance,
                    self.spiffe_id,
                    self.schedule.state,
                )
                on_unrenewable()
                return
            await trio.sleep(delay)
            self.schedule.renewal_started()
            try:
                contexts = await self.renew_once()
            except (IdentityError, ControlPlaneError) as error:
                retry_at = self.schedule.renewal_failed(
                    str(error), refused=isinstance(error, CertificateRequestRefused)
                )
                if retry_at is not None:
                    log.warning(
                        "%s: certificate renewal failed (%s); %s, retrying in %.1fs",
                        self.control.instance,
                        error,
                        self._serving_what(),
                        retry_at - self.clock(),
                    )
                continue
            log.info(
                "%s: renewed certificate, valid until %s",
                self.control.instance,
                contexts.not_after.strftime("%Y-%m-%d %H:%M:%S UTC"),
            )
            if self._wants_gateway_certificate:
                try:
                    await self._obtain_gateway_context()
                except (IdentityError, ControlPlaneError) as error:
                    log.warning(
                        "%s: could not renew the gateway's HTTPS certificate: %s",
                        self.control.instance,
                        error,
                    )
            on_renewed(contexts)

    async def gateway_https_context(self) -> ssl.SSLContext:
        """The gateway's HTTPS context, asked for on first use and renewed with the SVID."""
        self._wants_gateway_certificate = True
        if self.gateway_context is None:
            await self._obtain_gateway_context()
        assert self.gateway_context is not None
        return self.gateway_context

    async def _obtain_gateway_context(self) -> None:
        if self._key is None:
            raise IdentityError("the gateway's HTTPS certificate needs the sidecar's SVID first")
        serving_key = generate_key()
        csr_pem = make_serving_csr(serving_key, DEFAULT_GATEWAY_HOSTS)
        body = gateway_request_body(csr_pem, self._cert_pem, renewal_proof(self._key, csr_pem))
        cert_pem, _root = await self._request(body)
        try:
            context = gateway_server_context(
                cert_pem, serving_key, alpn_protocols=GATEWAY_HTTPS_ALPN
            )
        except (ValueError, ssl.SSLError) as error:
            raise IdentityError(f"the gateway's HTTPS certificate is unusable: {error}") from None
        self.gateway_context = context
