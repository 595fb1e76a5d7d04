"""nginx as the backend, and as the reference mTLS proxy pair.

Every configuration runs one worker in the foreground (``-g 'daemon off;'``)
with its pid file, logs and temp paths under a directory of its own, so that
several nginx processes coexist and nothing is written outside the
benchmark's temporary directory.  Keep-alive is unlimited on every hop:
nginx's default of 1000 requests per connection would add reconnects that
meshkit does not have.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .certs import INBOUND_DNS_NAME, BenchCerts
from .procs import Server, Servers, free_port

BODY_BYTES = 1024
RESPONSE_BODY = "x" * BODY_BYTES
KEEPALIVE_REQUESTS = 1_000_000
UPSTREAM_POOL = 64


def nginx_version() -> str:
    completed = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    return (completed.stderr or completed.stdout).strip().removeprefix("nginx version: ")


def _main_block(prefix: Path, name: str) -> str:
    # Started by root, nginx would run its worker as "nobody"; keep it as the
    # starting user so the worker can read and write the temporary directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes 1;\n"
        f"pid {prefix}/{name}.pid;\n"
        f"error_log {prefix}/{name}.error.log warn;\n"
        "events { worker_connections 4096; }\n"
    )


def _http_common(prefix: Path) -> str:
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        "    access_log off;\n"
        f"{temp}\n"
        f"    keepalive_requests {KEEPALIVE_REQUESTS};\n"
        "    keepalive_timeout 75s;\n"
    )


def _listen(port: int | str, *, http2: bool) -> str:
    # ``listen ... http2`` without TLS is h2c with prior knowledge only (no HTTP/1.1).
    return f"        listen 127.0.0.1:{port}{' http2' if http2 else ''};\n"


def backend_conf(*, prefix: Path, port: int | str, http2: bool = False) -> str:
    """A server answering every GET with a fixed 1 KiB body on 127.0.0.1:``port``
    (h2c with prior knowledge when ``http2``)."""
    return (
        _main_block(prefix, "backend")
        + "http {\n"
        + _http_common(prefix)
        + "    server {\n"
        + _listen(port, http2=http2)
        + "        location / {\n"
        + "            default_type application/octet-stream;\n"
        + f'            return 200 "{RESPONSE_BODY}";\n'
        + "        }\n"
        + "    }\n"
        + "}\n"
    )


def outbound_conf(
    *, prefix: Path, port: int, inbound_port: int, certs: BenchCerts, http2: bool = False
) -> str:
    """Plain HTTP in on ``port`` (h2c when ``http2``), mTLS (TLS 1.3, verified) out to the
    inbound proxy.  nginx proxies to an upstream over HTTP/1.1 only, so with ``http2``
    only the client's side is HTTP/2."""
    return (
        _main_block(prefix, "outbound")
        + "http {\n"
        + _http_common(prefix)
        + "    upstream inbound {\n"
        + f"        server 127.0.0.1:{inbound_port};\n"
        + f"        keepalive {UPSTREAM_POOL};\n"
        + f"        keepalive_requests {KEEPALIVE_REQUESTS};\n"
        + "    }\n"
        + "    server {\n"
        + _listen(port, http2=http2)
        + "        location / {\n"
        + "            proxy_pass https://inbound;\n"
        + "            proxy_http_version 1.1;\n"
        + '            proxy_set_header Connection "";\n'
        + f"            proxy_ssl_certificate {certs.outbound.cert};\n"
        + f"            proxy_ssl_certificate_key {certs.outbound.key};\n"
        + f"            proxy_ssl_trusted_certificate {certs.ca_cert};\n"
        + "            proxy_ssl_verify on;\n"
        + "            proxy_ssl_verify_depth 2;\n"
        + f"            proxy_ssl_name {INBOUND_DNS_NAME};\n"
        + "            proxy_ssl_protocols TLSv1.3;\n"
        + "            proxy_ssl_session_reuse on;\n"
        + "        }\n"
        + "    }\n"
        + "}\n"
    )


def inbound_conf(*, prefix: Path, port: int, backend_port: int, certs: BenchCerts) -> str:
    """mTLS (TLS 1.3, client certificate required) in on ``port``, plain HTTP to the backend."""
    return (
        _main_block(prefix, "inbound")
        + "http {\n"
        + _http_common(prefix)
        + "    upstream backend {\n"
        + f"        server 127.0.0.1:{backend_port};\n"
        + f"        keepalive {UPSTREAM_POOL};\n"
        + f"        keepalive_requests {KEEPALIVE_REQUESTS};\n"
        + "    }\n"
        + "    server {\n"
        + f"        listen 127.0.0.1:{port} ssl;\n"
        + f"        ssl_certificate {certs.inbound.cert};\n"
        + f"        ssl_certificate_key {certs.inbound.key};\n"
        + f"        ssl_client_certificate {certs.ca_cert};\n"
        + "        ssl_verify_client on;\n"
        + "        ssl_verify_depth 2;\n"
        + "        ssl_protocols TLSv1.3;\n"
        + "        location / {\n"
        + "            proxy_pass http://backend;\n"
        + "            proxy_http_version 1.1;\n"
        + '            proxy_set_header Connection "";\n'
        + "        }\n"
        + "    }\n"
        + "}\n"
    )


def nginx_argv(*, conf: Path, prefix: Path) -> list[str]:
    return [
        "nginx",
        "-c",
        str(conf),
        "-p",
        str(prefix),
        "-e",
        str(prefix / "startup.error.log"),
        "-g",
        "daemon off;",
    ]


def start_nginx(servers: Servers, *, name: str, conf_text: str, prefix: Path, port: int) -> Server:
    """Write ``conf_text`` under ``prefix``, start nginx on it and wait for ``port``."""
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(conf_text)
    server = servers.start(
        name=f"nginx {name}",
        argv=nginx_argv(conf=conf, prefix=prefix),
        log_path=prefix / "stdout.log",
    )
    server.wait_for_port(port)
    return server


def start_backend(
    servers: Servers, *, workdir: Path, http2: bool = False
) -> tuple[Server, int]:
    """The 1 KiB backend on a free port; returns the server and its port."""
    prefix = workdir / "backend"
    port = free_port()
    server = start_nginx(
        servers,
        name="backend",
        conf_text=backend_conf(prefix=prefix, port=port, http2=http2),
        prefix=prefix,
        port=port,
    )
    return server, port


def start_pair(
    servers: Servers, *, workdir: Path, backend_port: int, certs: BenchCerts, http2: bool = False
) -> tuple[Server, int, Server]:
    """Inbound then outbound nginx; returns (outbound, its plain HTTP port, inbound)."""
    inbound_prefix = workdir / "inbound"
    inbound_port = free_port()
    inbound = start_nginx(
        servers,
        name="inbound",
        conf_text=inbound_conf(
            prefix=inbound_prefix, port=inbound_port, backend_port=backend_port, certs=certs
        ),
        prefix=inbound_prefix,
        port=inbound_port,
    )
    outbound_prefix = workdir / "outbound"
    outbound_port = free_port()
    outbound = start_nginx(
        servers,
        name="outbound",
        conf_text=outbound_conf(
            prefix=outbound_prefix,
            port=outbound_port,
            inbound_port=inbound_port,
            certs=certs,
            http2=http2,
        ),
        prefix=outbound_prefix,
        port=outbound_port,
    )
    return outbound, outbound_port, inbound
