"""The example shop: a frontend that calls a catalog (two versions) and reviews.

Run it with ``meshkit up -f meshfile.example.py`` and open http://127.0.0.1:8080/.
"""

from meshkit import Mesh, http_get

mesh = Mesh("shop")

catalog_v1 = mesh.service(
    "catalog", version="v1", run="python catalog.py", cwd="examples/shop",
    replicas=2, health=http_get("/healthz"),
)
mesh.service(
    "catalog", version="v2", run="python catalog.py", cwd="examples/shop",
    env={"CATALOG_FLAVOUR": "new"}, health=http_get("/healthz"),
)
reviews = mesh.service(
    "reviews", run="python reviews.py", cwd="examples/shop", health=http_get("/healthz"),
)
mesh.service(
    "frontend", run="python frontend.py", cwd="examples/shop",
    health=http_get("/healthz"), upstreams=["catalog", reviews], depends_on=["catalog", reviews],
    watch=["examples/shop/frontend.py", "examples/shop/common.py"],
)

mesh.gateway(port=8080, routes={"/": "frontend"})
