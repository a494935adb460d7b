"""Everything hub_config/jupyterhub_config.py sets, driven by REEFLAB_* environment variables.

Switches: REEFLAB_MODE=local|kubernetes (spawner), REEFLAB_AUTH=local|oidc (login).
The README lists every variable with a worked example.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlparse

from .. import accounts
from ..profiles import default_profiles_path

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
TEMPLATES = Path(__file__).resolve().parent / "templates"


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in _env(name, default).split(",") if item.strip()]


def add_template_vars(c, **values: str) -> None:
    """Variables for the hub's pages (hub/templates/), keeping those set before."""
    hub = c.JupyterHub
    hub.template_vars = {**(hub.template_vars if "template_vars" in hub else {}), **values}


def state_dir() -> Path:
    path = Path(_env("REEFLAB_STATE_DIR") or REPO / ".reeflab").resolve()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def configure(c) -> None:
    """Apply the whole ReefLab hub configuration to the traitlets config object `c`."""
    mode = _env("REEFLAB_MODE", "local")
    auth = _env("REEFLAB_AUTH", "local")
    if mode not in ("local", "kubernetes"):
        raise ValueError(f"REEFLAB_MODE={mode!r}: use 'local' or 'kubernetes'")
    if auth not in ("local", "oidc"):
        raise ValueError(f"REEFLAB_AUTH={auth!r}: use 'local' or 'oidc'")
    configure_user_servers(c)
    c.JupyterHub.template_paths = [str(TEMPLATES)]  # JupyterHub's pages, plus a few words of ReefLab's
    if mode == "local":
        configure_local(c)
    else:
        configure_kubernetes(c)
    (configure_local_login if auth == "local" else configure_oidc_login)(c)
    if mode == "local" and not accounts.isolation_available():
        configure_shared_account(c, auth)
    if _env("REEFLAB_OSCAR_ENDPOINT"):
        configure_oscar_cluster(c)


def configure_user_servers(c) -> None:
    """What every user server gets, whatever spawns it."""
    c.Spawner.default_url = "/lab"
    c.Spawner.http_timeout = 120
    c.Spawner.start_timeout = 300
    c.Spawner.environment = {
        "REEFLAB_PROFILES_FILE": str(default_profiles_path()),
        "YOLO_OFFLINE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


def configure_local(c) -> None:
    """One machine: the hub, its proxy and one server process per user, all on 127.0.0.1."""
    from .spawners import ReefLabLocalSpawner

    state = state_dir()
    ip = _env("REEFLAB_IP", "127.0.0.1")
    port = int(_env("REEFLAB_PORT", "8000"))
    c.JupyterHub.bind_url = f"http://{ip}:{port}{_env('REEFLAB_BASE_URL', '/')}"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{_env('REEFLAB_HUB_API_PORT', '8081')}"
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{_env('REEFLAB_PROXY_API_PORT', '8001')}"
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    chp = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
    if chp.exists():
        c.ConfigurableHTTPProxy.command = [str(chp)]
    c.ConfigurableHTTPProxy.auth_token = _secret(state / "proxy_token")
    c.JupyterHub.db_url = _env("REEFLAB_DB_URL") or f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.default_url = "/hub/home"
    c.JupyterHub.cleanup_servers = True

    c.JupyterHub.spawner_class = ReefLabLocalSpawner
    c.Spawner.cmd = [str(VENV_BIN / "jupyterhub-singleuser")]
    c.Spawner.environment = {
        **c.Spawner.environment,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    homes = Path(_env("REEFLAB_HOMES") or state / "homes")
    c.ReefLabLocalSpawner.home_dir_template = str(homes / "{username}")
    c.ReefLabHub.homes_dir = str(homes)  # `reeflab up`: once stopped, nothing of its users runs or is mounted
    if accounts.isolation_available():
        protect_platform_state(state, homes)
    # deleting a hub user revokes their accounts (hub/revoke.py): their home is moved aside, their OS account goes
    c.RevokingAuthenticator.homes_dir = str(homes)
    c.RevokingAuthenticator.os_accounts = accounts.isolation_available()
    configure_idle_culler(c)
    configure_serverless(c)
    configure_tracking(c)
    configure_catalogue(c)
    configure_usage(c)
    if _env(LABEL_STUDIO_ADMIN_ENV):
        configure_label_studio_databases(c)


def protect_platform_state(state: Path, homes: Path) -> None:
    """Users have OS accounts: they may pass through the state folder to their homes, nothing more.

    The hub and the services it starts (engine, SeaweedFS, MLflow) create files readable by
    their owner only (umask 077); what an earlier run left readable is closed here.
    """
    os.umask(0o077)
    homes.mkdir(parents=True, exist_ok=True)
    homes.chmod(0o711)  # enter, never list
    if state in homes.parents:
        state.chmod(0o711)
    for entry in state.iterdir():
        if entry != homes and entry not in homes.parents and not entry.is_symlink():
            entry.chmod(entry.stat().st_mode & 0o700)


def configure_shared_account(c, auth: str) -> None:
    """No root: every server would run under the hub's own account, so nobody is kept apart.

    One user (the first admin) may log in, unless the operator accepts shared-account mode with
    REEFLAB_SHARED_ACCOUNT=true; then every hub page says that users are not isolated.
    """
    c.ReefLabLocalSpawner.isolate_users = False
    if _env("REEFLAB_SHARED_ACCOUNT").lower() in ("1", "true", "yes"):
        add_template_vars(c, announcement=SHARED_ACCOUNT_NOTICE)
        return
    if auth != "local":
        raise ValueError(
            "ReefLab runs without root, so every user would share one OS account: run the hub as root "
            "(each user gets an account), or accept shared-account mode with REEFLAB_SHARED_ACCOUNT=true"
        )
    single = sorted(_env_list("REEFLAB_ADMINS", "admin"))[:1]
    add_template_vars(c, announcement=SINGLE_USER_NOTICE.format(name=single[0]))
    c.Authenticator.admin_users = set(single)
    c.Authenticator.allowed_users = set(single)
    c.Authenticator.allow_existing_users = False
    c.FirstUseAuthenticator.create_users = False


SHARED_ACCOUNT_NOTICE = (
    "Shared-account mode: every user's server runs under one OS account, so users of this hub can "
    "read each other's files and credentials. Keep nothing private here."
)
SINGLE_USER_NOTICE = (
    "Single-user mode: ReefLab runs without root, so users could not be kept apart; only {name} may log in. "
    "Run it as root to give each user their own account."
)


def configure_kubernetes(c) -> None:
    """At scale: user pods from the gated profiles, each user in a namespace of their own
    (<REEFLAB_NAMESPACE>-<user>, see hub/kubernetes_isolation.py). The hub's own networking, database,
    proxy, user storage and culling stay with the deployment (e.g. the Zero to JupyterHub chart)."""
    from .spawners import ReefLabKubeSpawner

    c.JupyterHub.spawner_class = ReefLabKubeSpawner
    # user pods read the copy of profiles.yaml installed in the image (<prefix>/etc/reeflab)
    c.Spawner.environment.pop("REEFLAB_PROFILES_FILE")
    c.ReefLabKubeSpawner.profiles_file = str(default_profiles_path())
    if _env("REEFLAB_NAMESPACE"):  # the hub's; users' servers go to <it>-<user> (enable_user_namespaces)
        c.KubeSpawner.namespace = _env("REEFLAB_NAMESPACE")
        c.ReefLabKubeSpawner.hub_namespace = _env("REEFLAB_NAMESPACE")
    if _env("REEFLAB_STORAGE_CSI_DRIVER"):  # mounts without privileged sidecars
        c.ReefLabKubeSpawner.storage_csi_driver = _env("REEFLAB_STORAGE_CSI_DRIVER")
    if _env("REEFLAB_STORAGE_MOUNTS"):  # csi | sidecar (privileged: an explicit opt-in) | none
        c.ReefLabKubeSpawner.storage_mount_mode = _env("REEFLAB_STORAGE_MOUNTS")
    # deployments and jobs made from user pods are Kubernetes objects in the user's namespace
    c.Spawner.environment["REEFLAB_DEPLOYMENTS"] = "kubernetes"
    # the contract of the images in images/: jupyterhub-singleuser as jovyan (uid 1000)
    c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
    c.KubeSpawner.working_dir = "/home/jovyan"
    c.KubeSpawner.uid = 1000
    c.KubeSpawner.fs_gid = 100
    if _env("REEFLAB_MLFLOW_URL"):
        configure_tracking_cluster(c)
    if _env("REEFLAB_USAGE_URL"):  # the admins' status from the cluster, where the operator gives it an address
        configure_usage(c, kubernetes=True)
    if _env(LABEL_STUDIO_ADMIN_ENV):  # each user's pod gets their own database, from a Secret
        configure_label_studio_databases(c)


def configure_local_login(c) -> None:
    """Local accounts for one lab machine: an admin adds users, each sets a password at first login."""
    # FirstUseAuthenticator, which also revokes a deleted user's accounts (hub/authenticators.py)
    c.JupyterHub.authenticator_class = "reeflab.hub.authenticators.ReefLabFirstUseAuthenticator"
    c.Authenticator.admin_users = set(_env_list("REEFLAB_ADMINS", "admin"))
    c.Authenticator.allowed_users = set(_env_list("REEFLAB_USERS"))
    c.Authenticator.allow_existing_users = True
    c.FirstUseAuthenticator.dbm_path = str(state_dir() / "passwords.dbm")
    c.FirstUseAuthenticator.min_password_length = 8
    # closed by default: only users an admin added (admin panel or REEFLAB_USERS) may log in
    open_signup = _env("REEFLAB_OPEN_SIGNUP", "false").lower() in ("1", "true", "yes")
    c.FirstUseAuthenticator.create_users = open_signup
    who = "Anyone may pick an unused name." if open_signup else "Your name must have been added by an admin."
    add_template_vars(
        c,
        reeflab_login_hint=(
            "First login with a name? The password you type now becomes its password (at least 8 characters): "
            f"keep it, you will need it next time. {who}"
        ),
    )


def configure_oidc_login(c) -> None:
    """Login with an OIDC provider (EGI Check-in, Keycloak): members of REEFLAB_OIDC_ALLOWED_VOS only,
    groups only from entitlements of the pinned namespace and authority, accounts keyed on a stable claim."""
    from .oidc import (
        DEFAULT_AUTHORITY,
        DEFAULT_NAMESPACE,
        MUTABLE_CLAIMS,
        ReefLabOAuthenticator,
        auth_state_groups,
        discover,
    )

    claim = _env("REEFLAB_OIDC_GROUPS_CLAIM", "eduperson_entitlement")
    allowed = set(_env_list("REEFLAB_OIDC_ALLOWED_VOS"))
    if not allowed:
        raise ValueError("REEFLAB_OIDC_ALLOWED_VOS is empty: name the VOs whose members may log in")
    if not _env("JUPYTERHUB_CRYPT_KEY"):
        raise ValueError(
            "OIDC login keeps tokens in encrypted auth_state: set JUPYTERHUB_CRYPT_KEY (openssl rand -hex 32)"
        )
    if not _env("REEFLAB_OIDC_CLIENT_ID"):
        raise ValueError("REEFLAB_OIDC_CLIENT_ID is empty: register the hub as a client of the provider")
    namespace = _env("REEFLAB_OIDC_ENTITLEMENT_NAMESPACE") or DEFAULT_NAMESPACE
    if not namespace.startswith("urn:"):
        raise ValueError(
            f"REEFLAB_OIDC_ENTITLEMENT_NAMESPACE={namespace!r}: give a URN prefix such as {DEFAULT_NAMESPACE}"
        )
    namespace = namespace if namespace.endswith(":") else namespace + ":"  # `...:group` must not match `...:groupx`
    authority = _env("REEFLAB_OIDC_ENTITLEMENT_AUTHORITY") or DEFAULT_AUTHORITY
    username_claim = _env("REEFLAB_OIDC_USERNAME_CLAIM") or "sub"
    if username_claim in MUTABLE_CLAIMS:
        raise ValueError(
            f"REEFLAB_OIDC_USERNAME_CLAIM={username_claim}: users can change that claim, so it cannot "
            "identify them. Use a stable one (sub, or voperson_id at EGI Check-in); the readable hub name "
            "comes from REEFLAB_OIDC_NAME_CLAIM"
        )
    # explicit URLs win; the issuer's discovery document fills in the ones not given
    endpoints = {
        "authorization_endpoint": _env("REEFLAB_OIDC_AUTHORIZE_URL"),
        "token_endpoint": _env("REEFLAB_OIDC_TOKEN_URL"),
        "userinfo_endpoint": _env("REEFLAB_OIDC_USERDATA_URL"),
    }
    issuer = _env("REEFLAB_OIDC_ISSUER")
    if issuer and not all(endpoints.values()):
        discovered = discover(issuer)
        endpoints = {name: url or discovered.get(name, "") for name, url in endpoints.items()}
    missing = sorted(name for name, url in endpoints.items() if not url)
    if missing:
        raise ValueError(
            f"OIDC endpoints unknown: {', '.join(missing)}. Set REEFLAB_OIDC_ISSUER (discovery), "
            "or REEFLAB_OIDC_AUTHORIZE_URL, REEFLAB_OIDC_TOKEN_URL and REEFLAB_OIDC_USERDATA_URL"
        )

    c.JupyterHub.authenticator_class = ReefLabOAuthenticator
    a = c.GenericOAuthenticator
    a.client_id = _env("REEFLAB_OIDC_CLIENT_ID")
    a.client_secret = _env("REEFLAB_OIDC_CLIENT_SECRET")
    a.oauth_callback_url = _env("REEFLAB_OIDC_CALLBACK_URL")
    a.authorize_url = endpoints["authorization_endpoint"]
    a.token_url = endpoints["token_endpoint"]
    a.userdata_url = endpoints["userinfo_endpoint"]
    scopes = ["openid", "profile", "email", claim] + ([username_claim] if username_claim != "sub" else [])
    a.scope = _env_list("REEFLAB_OIDC_SCOPES", ",".join(scopes))
    a.username_claim = username_claim
    a.login_service = _env("REEFLAB_OIDC_NAME", "EGI Check-in")
    a.enable_auth_state = True
    a.manage_groups = True
    a.auth_state_groups_key = auth_state_groups(
        claim,
        key=ReefLabOAuthenticator.user_auth_state_key,
        namespace=namespace,
        authority=None if authority.lower() == "none" else authority,
        plain_groups=_env("REEFLAB_OIDC_PLAIN_GROUPS", "false").lower() in ("1", "true", "yes"),
    )
    a.allowed_groups = allowed
    a.admin_groups = set(_env_list("REEFLAB_OIDC_ADMIN_VOS"))
    a.custom_403_message = (
        f"Sorry, only members of {', '.join(sorted(allowed))} may use this hub. "
        "Ask to join one of these VOs, then log in again."
    )
    a.refresh_pre_spawn = True
    r = c.ReefLabOAuthenticator
    r.name_claim = _env("REEFLAB_OIDC_NAME_CLAIM", "preferred_username")
    r.identities_file = _env("REEFLAB_OIDC_IDENTITIES_FILE") or str(state_dir() / "oidc-identities.json")


def activity_interval(cull_timeout: int) -> int:
    """Seconds between the activity reports of user servers (and of their running jobs and pipelines): a third
    of the cull timeout, so a server that is busy reports at least twice before it would count as idle; at most
    JupyterHub's usual 300 s, at least 10 s."""
    return max(10, min(300, cull_timeout // 3))


def configure_idle_culler(c) -> None:
    """Stop servers idle for REEFLAB_CULL_TIMEOUT seconds (0: never). Servers report activity, and jobs keep
    their server alive, every `activity_interval` of it; the hub reads the proxy's activity as often."""
    timeout = int(_env("REEFLAB_CULL_TIMEOUT", "3600"))
    if timeout <= 0:
        return
    interval = activity_interval(timeout)
    c.Spawner.environment = {**c.Spawner.environment, "JUPYTERHUB_ACTIVITY_INTERVAL": str(interval)}
    c.JupyterHub.last_activity_interval = interval
    add_service(
        c,
        {"name": "idle-culler", "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={timeout}"]},
        scopes=["list:users", "read:users:activity", "read:servers", "delete:servers"],
    )


def add_service(c, service: dict, scopes: list[str]) -> None:
    """Register a hub-managed service and a role with the scopes it needs (none for a service that needs none)."""
    hub = c.JupyterHub
    hub.services = [*(hub.services if "services" in hub else []), service]
    if not scopes:  # an empty role only earns a warning at every start
        return
    role = {"name": service["name"], "scopes": scopes, "services": [service["name"]]}
    hub.load_roles = [*(hub.load_roles if "load_roles" in hub else []), role]


def _secret(path: Path) -> str:
    """A random token kept in `path` (0600), so restarts reuse it."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


SERVERLESS_SERVICE = "reeflab-serverless"


def configure_serverless(c) -> None:
    """The local OSCAR-compatible engine as a hub-managed service at /services/reeflab-serverless/,
    with the platform's S3 server (SeaweedFS, managed service `reeflab-s3`) for its buckets.

    Every user may call the engine with a hub token (the access scope is added to the `user` role
    and to the tokens of user servers); each user gets an OSCAR basic-auth login and their own S3
    key from its /system/config. SeaweedFS posts upload events to the engine (a shared token).
    """
    port = int(_env("REEFLAB_SERVERLESS_PORT", "8095"))
    prefix = f"/services/{SERVERLESS_SERVICE}/"
    s3 = configure_object_storage(c, webhook=f"http://127.0.0.1:{port}{prefix}system/storage-events")
    command = [
        sys.executable,
        "-m",
        "reeflab.oscar_engine",
        f"--state-dir={state_dir() / 'serverless'}",
        f"--ServerlessApp.s3_endpoint={s3['endpoint']}",
        f"--ServerlessApp.s3_admin_key_file={s3['admin_key_file']}",
        f"--ServerlessApp.events_token_file={s3['events_token_file']}",
        # as root, jobs run as their owner's OS account: one the engine makes first gets the home the spawner uses
        f"--ServerlessApp.homes_dir={Path(_env('REEFLAB_HOMES') or state_dir() / 'homes')}",
    ]
    token_file = state_dir() / "serverless-api-token"  # the engine's service token: the hub revokes users with it
    service = {
        "name": SERVERLESS_SERVICE,
        "url": f"http://127.0.0.1:{port}",
        "command": command,
        "environment": {"YOLO_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"},
        "api_token": _secret(token_file),
    }
    # users' generations (`created`): the engine's records of a deleted user are revoked, never inherited
    add_service(c, service, scopes=["list:users", "read:users"])
    c.RevokingAuthenticator.serverless_url = f"http://127.0.0.1:{port}{prefix}"
    c.RevokingAuthenticator.serverless_token_file = str(token_file)
    # user servers (and their kernels) reach the engine directly, with their own hub token
    c.Spawner.environment = {**c.Spawner.environment, "REEFLAB_SERVERLESS_URL": f"http://127.0.0.1:{port}{prefix}"}
    access = f"access:services!service={SERVERLESS_SERVICE}"
    _grant_scopes(c, "user", ["self"], [access])
    _grant_scopes(c, "server", ["users:activity!user", "access:servers!server"], [access])


def configure_object_storage(c, webhook: str) -> dict[str, str]:
    """SeaweedFS (S3 on REEFLAB_S3_PORT, default 8333) as the hub-managed service `reeflab-s3`.

    Its admin key and the webhook token are 0600 files in the state folder; user servers get the
    endpoint (REEFLAB_S3_ENDPOINT), and their own key from the engine's /system/config.
    """
    from ..storage.seaweedfs import new_admin_key

    state = state_dir()
    port = int(_env("REEFLAB_S3_PORT", "8333"))
    files = {"admin_key_file": str(state / "s3-admin-key.json"), "events_token_file": str(state / "s3-events-token")}
    new_admin_key(Path(files["admin_key_file"]))
    _secret(Path(files["events_token_file"]))
    command = [
        sys.executable,
        "-m",
        "reeflab.storage.seaweedfs",
        f"--dir={state / 's3'}",
        f"--s3-port={port}",
        f"--admin-key-file={files['admin_key_file']}",
        f"--webhook-url={webhook}",
        f"--webhook-token-file={files['events_token_file']}",
        f"--log-file={state / 's3' / 'seaweedfs.log'}",  # its own chatter stays out of the hub's output
    ]
    add_service(c, {"name": "reeflab-s3", "command": command}, scopes=[])
    endpoint = f"http://127.0.0.1:{port}"
    c.Spawner.environment = {**c.Spawner.environment, "REEFLAB_S3_ENDPOINT": endpoint}
    return {"endpoint": endpoint, **files}


TRACKING_SERVICE = "reeflab-mlflow"
TRACKING_UI = "reeflab/mlflow/"  # under each user's server (TrackingService.ui_path)


def configure_tracking(c) -> None:
    """MLflow (sqlite + served artifacts, basic-auth) as the hub-managed service `reeflab-mlflow`.

    It listens on 127.0.0.1:$REEFLAB_MLFLOW_PORT (default 5005) only and is not routed by the
    proxy: every request needs an MLflow account, and each user's server gets its own (made by a
    pre-spawn hook) as MLFLOW_TRACKING_URI/_USERNAME/_PASSWORD. Users open the UI through their
    server at /user/<name>/reeflab/mlflow/, which logs them in as themselves.
    """
    from ..training.accounts import tracking_pre_spawn_hook

    port = int(_env("REEFLAB_MLFLOW_PORT", "5005"))
    state = state_dir() / "mlflow"
    command = [sys.executable, "-m", "reeflab.training.tracking_server", f"--state-dir={state}", f"--port={port}"]
    command.append(f"--log-file={state / 'mlflow.log'}")  # MLflow's start-up chatter stays out of the hub's output
    add_service(c, {"name": TRACKING_SERVICE, "command": command}, scopes=[])
    previous = c.Spawner.pre_spawn_hook if "pre_spawn_hook" in c.Spawner else None
    c.Spawner.pre_spawn_hook = tracking_pre_spawn_hook(f"http://127.0.0.1:{port}", state, previous=previous)
    add_template_vars(c, reeflab_mlflow_path=TRACKING_UI)  # the hub's Services menu links it
    c.RevokingAuthenticator.tracking_url = f"http://127.0.0.1:{port}"
    c.RevokingAuthenticator.tracking_state_dir = str(state)


def configure_tracking_cluster(c) -> None:
    """Kubernetes mode: MLflow runs in the cluster (hub_config/kubernetes/mlflow.yaml) at REEFLAB_MLFLOW_URL, and
    the same pre-spawn hook as in local mode gives each user server its account. The hub holds the secrets MLflow
    holds (REEFLAB_MLFLOW_ADMIN_PASSWORD, REEFLAB_MLFLOW_USER_KEY, from MLflow's Secret), kept as 0600 files in
    its state folder, with its record of whose account is whose."""
    from ..training.accounts import tracking_pre_spawn_hook
    from ..training.tracking_server import SECRET_ENV, secrets_from_env

    missing = [SECRET_ENV[name] for name in ("admin_password", "user_key") if not _env(SECRET_ENV[name])]
    if missing:
        raise ValueError(
            f"REEFLAB_MLFLOW_URL is set but {', '.join(missing)} is not: give the hub the keys admin-password and "
            "user-key of MLflow's Secret (hub_config/kubernetes/mlflow.yaml says how)"
        )
    url = _env("REEFLAB_MLFLOW_URL").rstrip("/")
    state = state_dir() / "mlflow"
    secrets_from_env(state)
    previous = c.Spawner.pre_spawn_hook if "pre_spawn_hook" in c.Spawner else None
    c.Spawner.pre_spawn_hook = tracking_pre_spawn_hook(url, state, previous=previous)
    add_template_vars(c, reeflab_mlflow_path=TRACKING_UI)
    c.RevokingAuthenticator.tracking_url = url
    c.RevokingAuthenticator.tracking_state_dir = str(state)


LABEL_STUDIO_ADMIN_ENV = "REEFLAB_LABEL_STUDIO_ADMIN_DATABASE"


def configure_label_studio_databases(c) -> None:
    """Each user's Label Studio on their own PostgreSQL database (annotation/databases.py), either mode: a pre-spawn
    hook makes the user's role and database with the operator's admin role ($REEFLAB_LABEL_STUDIO_ADMIN_DATABASE,
    CREATEROLE + CREATEDB); passwords derive from a key kept 0600 in the hub's state folder."""
    from ..annotation.databases import LabelStudioDatabases, label_studio_pre_spawn_hook

    databases = LabelStudioDatabases(_env(LABEL_STUDIO_ADMIN_ENV), _secret(state_dir() / "label-studio-database-key"))
    previous = c.Spawner.pre_spawn_hook if "pre_spawn_hook" in c.Spawner else None
    c.Spawner.pre_spawn_hook = label_studio_pre_spawn_hook(databases, previous=previous)
    c.RevokingAuthenticator.label_studio_admin_database = _env(LABEL_STUDIO_ADMIN_ENV)


CATALOGUE_SERVICE = "reeflab-catalogue"


def configure_catalogue(c) -> None:
    """The catalogue service (reeflab.publishing) as the hub-managed service `reeflab-catalogue` on
    127.0.0.1:$REEFLAB_CATALOGUE_PORT (default 8097): users publish checked modules to it with their hub token (it
    records who, as the hub says), every marketplace reads its index, and it checks the installed modules itself
    (again when they change) so each shows the platform's badge. Its state is its own (the hub's account)."""
    port = int(_env("REEFLAB_CATALOGUE_PORT", "8097"))
    # not routed by the proxy (an API for users' servers, not a page): on 127.0.0.1 only, as MLflow
    command = [sys.executable, "-m", "reeflab.publishing", f"--port={port}", "--base-url=/"]
    command.append(f"--state-dir={state_dir() / 'catalogue'}")
    if _env("REEFLAB_CHECK_INSTALLED_MODULES", "true").lower() in ("0", "false", "no"):
        command.append("--CatalogueApp.check_installed=False")
    add_service(c, {"name": CATALOGUE_SERVICE, "command": command}, scopes=[])
    c.Spawner.environment = {**c.Spawner.environment, "REEFLAB_CATALOGUE_URL": f"http://127.0.0.1:{port}/"}
    access = f"access:services!service={CATALOGUE_SERVICE}"
    _grant_scopes(c, "user", ["self"], [access])
    _grant_scopes(c, "server", ["users:activity!user", "access:servers!server"], [access])


USAGE_SERVICE = "reeflab-usage"


def configure_usage(c, kubernetes: bool = False) -> None:
    """The usage service (reeflab.usage) as the hub-managed service `reeflab-usage` on 127.0.0.1:$REEFLAB_USAGE_PORT
    (default 8098), under the platform's account, answering hub admins only. Locally it samples each user's
    processes every $REEFLAB_USAGE_INTERVAL seconds (60): usage over time and the platform's status; in kubernetes
    mode (the hub's ServiceAccount, hub-rbac.yaml) the status from the cluster: users' namespaces and free capacity."""
    url = f"http://127.0.0.1:{_env('REEFLAB_USAGE_PORT', '8098')}"
    command = [sys.executable, "-m", "reeflab.usage", f"--state-dir={state_dir() / 'usage'}"]
    if kubernetes:  # in the hub's pod, reached by the proxy's at $REEFLAB_USAGE_URL (e.g. a port of the hub Service)
        url = _env("REEFLAB_USAGE_URL")
        command += ["--kubernetes", "--ip=0.0.0.0", f"--port={urlparse(url).port or 8098}"]
    else:
        homes = Path(_env("REEFLAB_HOMES") or state_dir() / "homes")
        command += [f"--homes={homes}", f"--interval={_env('REEFLAB_USAGE_INTERVAL', '60')}"]
        command.append(f"--engine-db={state_dir() / 'serverless' / 'engine.sqlite'}")
    # at /services/reeflab-usage/ through the proxy too; its own token reads the hub's users and their servers
    add_service(
        c,
        {"name": USAGE_SERVICE, "url": url, "command": command, "display": False},
        scopes=["list:users", "read:users", "read:servers"],
    )
    # every user may reach it, so that a non-admin hears why not (403) rather than an unknown token
    _grant_scopes(c, "user", ["self"], [f"access:services!service={USAGE_SERVICE}"])
    # users' servers ask it with their own token for the panel's Platform section (the service answers admins only)
    _grant_scopes(
        c, "server", ["users:activity!user", "access:servers!server"], [f"access:services!service={USAGE_SERVICE}"]
    )
    service_url = f"{url.rstrip('/')}/services/{USAGE_SERVICE}/"
    c.Spawner.environment = {**c.Spawner.environment, "REEFLAB_USAGE_SERVICE_URL": service_url}


def configure_oscar_cluster(c) -> None:
    """At scale: users' serverless calls go to a real OSCAR cluster (REEFLAB_OSCAR_ENDPOINT) with
    their own OIDC access token, taken from the login's encrypted auth_state at each spawn."""
    c.Spawner.environment = {**c.Spawner.environment, "REEFLAB_SERVERLESS_URL": _env("REEFLAB_OSCAR_ENDPOINT")}
    c.Spawner.auth_state_hook = oscar_token_from_auth_state


def oscar_token_from_auth_state(spawner, auth_state: dict | None) -> None:
    """Give the user's server the access token OSCAR accepts (the same OIDC provider logs into both)."""
    token = (auth_state or {}).get("access_token")
    if token:
        spawner.environment = {**spawner.environment, "REEFLAB_SERVERLESS_TOKEN": token}


def _grant_scopes(c, role: str, defaults: list[str], scopes: list[str]) -> None:
    """Add scopes to one of JupyterHub's default roles, keeping what it (or earlier config) grants."""
    hub = c.JupyterHub
    roles = list(hub.load_roles) if "load_roles" in hub else []
    found = next((r for r in roles if r.get("name") == role), None)
    if found is None:
        roles.append({"name": role, "scopes": [*defaults, *scopes]})
    else:
        found["scopes"] = [*found.get("scopes", defaults), *(s for s in scopes if s not in found.get("scopes", []))]
    hub.load_roles = roles
