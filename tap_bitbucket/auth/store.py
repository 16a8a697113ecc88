"""OAuth tokens and the settings file (atomic, locked, optionally encrypted)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import filelock

from tap_bitbucket.errors import AuthError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet
from tap_bitbucket.auth.constants import LOGGER, SETTINGS_FORMAT

# --------------------------------------------------------------------------------------
# Tokens and the settings file
# --------------------------------------------------------------------------------------


def _utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def verifier_digest(verifier: str) -> str:
    """A one-way fingerprint of a verifier, to recognise one that was already exchanged."""
    return hashlib.sha256(verifier.encode()).hexdigest()


@dataclass(frozen=True)
class TokenSet:
    """OAuth tokens as kept in memory and in the settings file."""

    access_token: str | None
    refresh_token: str | None = None
    expires_at: float | None = None  # epoch seconds
    expires_in: float | None = None  # lifetime granted by the server, seconds
    token_type: str = "bearer"  # noqa: S105 - an OAuth token type, not a password
    scopes: str | None = None
    client_id: str | None = None
    updated_at: str | None = None
    verifier_sha256: str | None = None

    @property
    def has_tokens(self) -> bool:
        return bool(self.access_token or self.refresh_token)

    def margin(self, configured: float) -> float:
        lifetime = self.expires_in
        if lifetime is None and self.expires_at is not None and self.updated_at:
            with contextlib.suppress(ValueError):
                lifetime = self.expires_at - datetime.fromisoformat(self.updated_at).timestamp()
        if lifetime is not None and lifetime > 0:
            return min(configured, lifetime / 2)
        return configured

    def is_fresh(self, configured_margin: float, now: float | None = None) -> bool:
        """True when the access token may be used without refreshing it first."""
        if not self.access_token:
            return False
        if self.expires_at is None:
            return True  # unknown expiry (a token given in config): use it until a 401
        now = time.time() if now is None else now
        return self.expires_at - now > self.margin(configured_margin)

    def to_json(self) -> dict[str, Any]:
        return {"format": SETTINGS_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any, problem: Callable[[str], AuthError]) -> TokenSet:
        if not isinstance(data, dict):
            raise problem("the content is not a JSON object")
        fields: dict[str, Any] = {}
        for name in (
            "access_token",
            "refresh_token",
            "scopes",
            "client_id",
            "updated_at",
            "verifier_sha256",
        ):
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise problem(f"'{name}' is not a string")
            fields[name] = value or None
        for name in ("expires_at", "expires_in"):
            value = data.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise problem(f"'{name}' is not a number")
            fields[name] = float(value) if value is not None else None
        token_type = data.get("token_type") or "bearer"
        if not isinstance(token_type, str):
            raise problem("'token_type' is not a string")
        return cls(token_type=token_type, **fields)

    @classmethod
    def from_response(
        cls, body: Mapping[str, Any], *, requested_at: float, client_id: str | None
    ) -> TokenSet:
        expires_in_raw = body.get("expires_in")
        expires_in: float | None
        try:
            expires_in = float(expires_in_raw) if expires_in_raw is not None else None
        except (TypeError, ValueError):
            expires_in = None
        if expires_in is None or expires_in <= 0:
            expires_in = 3600.0  # Bitbucket's documented lifetime
        scopes = body.get("scopes")
        if isinstance(scopes, list):
            scopes = " ".join(str(s) for s in scopes)
        refresh = body.get("refresh_token")
        return cls(
            access_token=str(body["access_token"]),
            refresh_token=str(refresh) if refresh else None,
            expires_at=requested_at + expires_in,
            expires_in=expires_in,
            token_type=str(body.get("token_type") or "bearer"),
            scopes=str(scopes) if scopes else None,
            client_id=client_id,
            updated_at=_utc_now_iso(),
        )

    def secrets(self) -> list[str]:
        return [v for v in (self.access_token, self.refresh_token) if v]


_SCRYPT_PARAMS = {"n": 2**14, "r": 8, "p": 1}


class OAuthSettingsStore:
    """The OAuth settings file: atomic, locked, mode 0600, optionally encrypted."""

    def __init__(
        self,
        path: str,
        key: str | None = None,
        *,
        lock_timeout: float = 120.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self.path = os.path.abspath(os.path.expanduser(path))
        self.key = key
        self.lock_timeout = lock_timeout
        self.logger = logger or LOGGER
        self._fernets: dict[bytes, Fernet] = {}
        self._salt: bytes | None = None
        self._thread_lock = threading.RLock()
        self._file_lock: filelock.BaseFileLock | None = None

    # -- helpers ---------------------------------------------------------------------

    def _problem(self, reason: str) -> AuthError:
        return AuthError(
            f"The OAuth settings file {self.path} is not usable ({reason}); delete it and run "
            "`tap-bitbucket-oauth login` (or supply a new oauth_verifier) to create it again."
        )

    def _fernet(self, salt: bytes, params: Mapping[str, int]) -> Fernet:
        # Imported here: only an encrypted settings file needs it, and loading the
        # library costs every run of the tap ~30 ms.
        from cryptography.fernet import Fernet  # noqa: PLC0415
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt  # noqa: PLC0415

        cached = self._fernets.get(salt)
        if cached is not None:
            return cached
        if not self.key:
            raise RuntimeError("no key")  # pragma: no cover - guarded by callers
        kdf = Scrypt(salt=salt, length=32, n=params["n"], r=params["r"], p=params["p"])
        fernet = Fernet(base64.urlsafe_b64encode(kdf.derive(self.key.encode())))
        self._fernets[salt] = fernet
        return fernet

    def exists(self) -> bool:
        return os.path.exists(self.path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the settings-file lock (threads of this process and other processes)."""
        with self._thread_lock:
            folder = os.path.dirname(self.path)
            try:
                os.makedirs(folder, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise AuthError(
                    f"Cannot create the folder of the OAuth settings file {self.path} "
                    f"({exc.strerror or exc.__class__.__name__}); fix its permissions or set "
                    "oauth_settings_location to a writable path."
                ) from None
            if self._file_lock is None:
                self._file_lock = filelock.FileLock(
                    self.path + ".lock", timeout=self.lock_timeout, mode=0o600
                )
            try:
                self._file_lock.acquire()
            except filelock.Timeout:
                raise AuthError(
                    f"Another process has held the lock {self.path}.lock for more than "
                    f"{self.lock_timeout:g} s; make sure no stuck tap-bitbucket process uses "
                    "this settings file, then run again."
                ) from None
            except OSError as exc:
                raise AuthError(
                    f"Cannot lock the OAuth settings file {self.path} "
                    f"({exc.strerror or exc.__class__.__name__}); fix the folder's "
                    "permissions or set oauth_settings_location to a writable path."
                ) from None
            try:
                yield
            finally:
                self._file_lock.release()

    # -- read ------------------------------------------------------------------------

    def read(self) -> TokenSet | None:
        """The tokens in the file; None when there is no file. Raises AuthError when unusable."""
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._problem(
                f"cannot read it: {exc.strerror or exc.__class__.__name__}"
            ) from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise self._problem("it is not valid JSON") from None
        if not isinstance(data, dict):
            raise self._problem("the content is not a JSON object")
        fmt = data.get("format")
        if fmt is not None and fmt != SETTINGS_FORMAT:
            raise self._problem(f"unknown format '{str(fmt)[:40]}'")
        if "token" in data or data.get("encrypted"):
            data = self._decrypt(data)
        elif self.key:
            self.logger.warning(
                "The OAuth settings file %s is not encrypted; it will be encrypted with "
                "oauth_settings_key on the next write.",
                self.path,
            )
        return TokenSet.from_json(data, self._problem)

    def _decrypt(self, envelope: Mapping[str, Any]) -> Any:
        if not self.key:
            raise AuthError(
                f"The OAuth settings file {self.path} is encrypted; set oauth_settings_key to "
                "the key it was written with (or delete the file and run `tap-bitbucket-oauth "
                "login`)."
            )
        if envelope.get("kdf") != "scrypt":
            raise self._problem(f"unknown key derivation '{str(envelope.get('kdf'))[:20]}'")
        try:
            salt = base64.b64decode(str(envelope["salt"]), validate=True)
            params_raw = envelope.get("kdf_params") or _SCRYPT_PARAMS
            params = {k: int(params_raw[k]) for k in ("n", "r", "p")}
            token = str(envelope["token"]).encode("ascii")
        except (KeyError, ValueError, TypeError):
            raise self._problem("the encrypted envelope is damaged") from None
        if not salt or params["n"] > 2**20 or params["r"] > 32 or params["p"] > 16:
            raise self._problem("the encrypted envelope is damaged")
        from cryptography.exceptions import InvalidKey  # noqa: PLC0415
        from cryptography.fernet import InvalidToken  # noqa: PLC0415

        try:
            plain = self._fernet(salt, params).decrypt(token)
        except (InvalidToken, InvalidKey):
            raise AuthError(
                f"Cannot decrypt the OAuth settings file {self.path}: oauth_settings_key is "
                "wrong (or the file is damaged); set the key the file was written with, or "
                "delete the file and run `tap-bitbucket-oauth login`."
            ) from None
        except ValueError:  # scrypt parameters the library refuses
            raise self._problem("the encrypted envelope is damaged") from None
        self._salt = salt
        try:
            return json.loads(plain.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise self._problem("the decrypted content is not valid JSON") from None

    # -- write -----------------------------------------------------------------------

    def serialize(self, tokens: TokenSet) -> bytes:
        payload = json.dumps(tokens.to_json(), indent=2, sort_keys=True).encode()
        if not self.key:
            return payload + b"\n"
        if self._salt is None:
            self._salt = os.urandom(16)
        token = self._fernet(self._salt, _SCRYPT_PARAMS).encrypt(payload)
        envelope = {
            "format": SETTINGS_FORMAT,
            "encrypted": True,
            "kdf": "scrypt",
            "kdf_params": _SCRYPT_PARAMS,
            "salt": base64.b64encode(self._salt).decode("ascii"),
            "token": token.decode("ascii"),
        }
        return json.dumps(envelope, indent=2, sort_keys=True).encode() + b"\n"

    def check_writable(self) -> None:
        """Fail before burning a refresh token when the new one could not be saved."""
        folder = os.path.dirname(self.path)
        if os.path.isdir(folder) and not os.access(folder, os.W_OK):
            raise AuthError(
                f"Cannot write the OAuth settings file {self.path} (its folder is not "
                "writable); fix the permissions or set oauth_settings_location to a writable "
                "path. The tokens were not refreshed."
            )

    def write(self, tokens: TokenSet) -> None:
        """Replace the file atomically (temp file, fsync, rename, fsync folder), mode 0600."""
        data = self.serialize(tokens)  # fails before anything on disk changes
        folder = os.path.dirname(self.path)
        tmp = os.path.join(folder, f".{os.path.basename(self.path)}.{secrets.token_hex(6)}.tmp")
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600
            )
            try:
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, 0o600)
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise AuthError(
                f"Cannot write the OAuth settings file {self.path} "
                f"({exc.strerror or exc.__class__.__name__}); fix the permissions or free "
                "space, or set oauth_settings_location to a writable path."
            ) from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if os.name != "nt":
            with contextlib.suppress(OSError):
                dir_fd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
