"""Build the demo world once, atomically, and find it again in the cache.

A build writes into a hidden temporary directory next to the destination and renames it into
place only after the manifest (written last) is complete, so an interrupted build never looks
finished. Later runs check the manifest (settings, the generator's code and the checksums of
every file, the encoder's included) instead of rebuilding. A file lock keeps two processes (say,
two Ray workers on one node) from building the same world at once.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import json
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock

from ot_ray.config import DemoConfig
from ot_ray.demo import encoder as encoder_module
from ot_ray.demo import grammar, lexicon, nli, qa, sampling, world
from ot_ray.demo.encoder import pretrain_encoder
from ot_ray.demo.lexicon import LANGUAGES, function_words
from ot_ray.demo.world import write_world
from ot_ray.errors import UserError

#: Bump when the generator changes what it writes for a given seed and sizes. The generator's
#: source is part of a world's identity too (``GENERATOR_MODULES``), so a change that forgets
#: the bump still gets a world of its own.
GENERATOR_VERSION = 2
GENERATOR_MODULES = (world, grammar, lexicon, sampling, nli, qa, encoder_module)
CACHE_ENV = "OT_RAY_CACHE"
MANIFEST = "manifest.json"


def default_cache_root() -> Path:
    """``$OT_RAY_CACHE`` if set, else ``~/.cache/ot-ray``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ot-ray").expanduser()


def world_dir(demo: DemoConfig) -> Path:
    """Where the world for these settings lives: one directory per (seed, sizes, encoder,
    generator version and code)."""
    root = Path(demo.cache_dir).expanduser() if demo.cache_dir else default_cache_root()
    digest = hashlib.sha256(json.dumps(_spec(demo), sort_keys=True).encode()).hexdigest()[:10]
    return root / f"demo-world-seed{demo.seed}-{digest}"


def ensure_demo_world(demo: DemoConfig, out: Path | None = None, *, force: bool = False) -> Path:
    """The directory of a complete demo world, built first if needed (``force``: rebuild)."""
    out = (out or world_dir(demo)).expanduser().resolve()
    lock = out.parent / f".{out.name}.lock"
    made = out.parent
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        made = lock
        lock.touch()  # FileLock would wait forever on a lock it cannot create
    except OSError as err:
        raise UserError(
            f"{out}: cannot build the demo world there: cannot create {made} "
            f"({err.strerror or err})"
        ) from None
    with FileLock(str(lock)):
        _remove_leftovers(out)
        if out.exists() and not force:
            check_world(out, demo)
            return out
        if out.exists() and any(out.iterdir()) and not _is_demo_world(out):
            raise UserError(f"{out}: exists, is not empty and is not a demo world; not touching it")
        _build(out, demo, replace=out.exists())
    return out


def check_world(path: Path, demo: DemoConfig) -> dict[str, object]:
    """The manifest of a complete world built with ``demo``'s settings; a clear error if not."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"{path}: no {MANIFEST}; not a complete demo world (rebuild with --force)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{manifest_path}: unreadable ({err}); rebuild with --force") from None
    except OSError as err:  # permissions: the world is someone else's, --force would not help
        raise UserError(f"{manifest_path}: cannot read it ({err.strerror or err})") from None
    if not _is_world_manifest(manifest):
        raise UserError(
            f"{manifest_path}: not a demo-world manifest; if {path} is no other program's "
            "folder, remove it, or choose another one"
        )
    if not set(ENCODER_FILES) <= manifest["files"].keys():  # a world from before encoder sums
        raise UserError(f"{manifest_path}: has no checksums of the encoder; rebuild with --force")
    if manifest.get("spec") != _spec(demo):
        raise UserError(
            f"{manifest_path}: built with other settings than the config asks for "
            "(rebuild with --force, or use another directory)"
        )
    for name, checksum in manifest["files"].items():
        file = path / name
        try:
            found = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None
        except OSError as err:  # permissions: someone else's world, --force would not help
            raise UserError(f"{file}: cannot read it ({err.strerror or err})") from None
        if found != checksum:
            raise UserError(f"{file}: missing or changed since the build (rebuild with --force)")
    return manifest


#: Encoder files every world's manifest must list (the weights and what reads them).
ENCODER_FILES = ("encoder/model.safetensors", "encoder/config.json", "encoder/tokenizer.json")


def _is_world_manifest(manifest: object) -> bool:
    """What ``_build`` writes: a spec naming the generator, and the files' checksums."""
    return (
        isinstance(manifest, dict)
        and isinstance(manifest.get("files"), dict)
        and isinstance(manifest.get("spec"), dict)
        and "generator_version" in manifest["spec"]
    )


#: What a world folder holds, and nothing else.
WORLD_LAYOUT = frozenset({MANIFEST, "mono", "parallel", "xnli", "xquad", "encoder"})


def _is_demo_world(path: Path) -> bool:
    """Whether ``--force`` may replace ``path``: only a folder an earlier build made, known by
    its manifest or, where that is damaged, by holding a world's folders and nothing else (a
    project's own ``manifest.json`` must not make it look like one)."""
    try:
        if _is_world_manifest(json.loads((path / MANIFEST).read_text(encoding="utf-8"))):
            return True
    except (OSError, ValueError):
        pass
    return {child.name for child in path.iterdir()} == WORLD_LAYOUT


#: How long another node's build folder is left alone after it last changed.
FOREIGN_BUILD_HOURS = 6


def _remove_leftovers(out: Path) -> None:
    """Folders a killed build or swap left next to ``out``. The caller holds the world's lock,
    but on a shared volume whose locks are node-local (NFS without lockd) another node may
    be building: its folders are left alone (see :func:`_build_in_progress`)."""
    name = glob.escape(out.name)  # a name with [ or * must not match another world's
    for pattern in (f".{name}.partial-*", f".{name}.old-*"):
        for stale in out.parent.glob(pattern):
            if not _build_in_progress(stale):
                shutil.rmtree(stale, ignore_errors=True)


def _build_tag() -> str:
    """``host@pid``: who is building, in the names of its staging and swap folders."""
    return f"{socket.gethostname()}@{os.getpid()}"


def _build_in_progress(folder: Path) -> bool:
    """Another node made ``folder`` and touched it less than :data:`FOREIGN_BUILD_HOURS` ago
    (a build touches its folder every few minutes, :func:`_kept_fresh`). This host's folders
    are leftovers: the caller holds the world's lock, which holds on one host. So are folders
    named before builds were tagged (no ``@``)."""
    tag = folder.name.rsplit(".partial-" if ".partial-" in folder.name else ".old-", 1)[-1]
    host, at, _ = tag.partition("@")
    if not at or host == socket.gethostname():
        return False
    try:
        age = time.time() - folder.stat().st_mtime
    except OSError:
        return False
    return age < FOREIGN_BUILD_HOURS * 3600


@contextlib.contextmanager
def _kept_fresh(folder: Path, every: float = 300.0) -> Iterator[None]:
    """Touch ``folder`` every ``every`` seconds while the block runs, so that another node sees
    a long build (pre-training writes nothing for a long time) as alive."""
    done = threading.Event()

    def touch() -> None:
        while not done.wait(every):
            with contextlib.suppress(OSError):
                os.utime(folder)

    beat = threading.Thread(target=touch, name="demo-world-heartbeat", daemon=True)
    beat.start()
    try:
        yield
    finally:
        done.set()
        beat.join()


def _build(out: Path, demo: DemoConfig, *, replace: bool = False) -> None:
    """Build into a staging folder, then move it to ``out`` (``replace``: swap the world there
    out once the new one is complete)."""
    # made with the umask's permissions (mkdtemp's 0700 would keep a shared cache to its builder)
    staging = out.parent / f".{out.name}.partial-{_build_tag()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        with _kept_fresh(staging):
            _write_staged_world(staging, demo)
        if replace and out.exists():  # --force: swap the old world out once the new one is done
            trash = out.with_name(f".{out.name}.old-{_build_tag()}")
            out.rename(trash)
            try:
                staging.rename(out)
            except BaseException:
                trash.rename(out)  # the old world back where it was, not left hidden
                raise
            shutil.rmtree(trash)
        else:
            try:
                staging.rename(out)
            except OSError:
                if not out.is_dir():
                    raise
                # another node built it meanwhile (its lock did not reach here): keep that one
                shutil.rmtree(staging, ignore_errors=True)
                check_world(out, demo)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_staged_world(staging: Path, demo: DemoConfig) -> None:
    """The world's files, its pre-trained encoder and, last, its manifest, into ``staging``."""
    started = time.perf_counter()
    manifest = write_world(staging, demo.sizes, demo.seed)
    encoder = pretrain_encoder(
        [staging / "mono" / f"{lang.code}.txt" for lang in LANGUAGES],
        staging / "encoder",
        demo.encoder,
        demo.seed,
        function_words(demo.seed) if demo.encoder.whole_function_words else (),
    )
    manifest["files"] |= {
        file.relative_to(staging).as_posix(): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted((staging / "encoder").rglob("*"))
        if file.is_file()
    }
    manifest = {
        "spec": _spec(demo),
        **manifest,
        "encoder": {"path": "encoder", **encoder},
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    _readable_as_the_umask_allows(staging)


def _readable_as_the_umask_allows(folder: Path) -> None:
    """Files and folders with the permissions the umask gives: safetensors writes the weights
    owner-only (0600), so another user of a shared cache could read every file but those."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _spec(demo: DemoConfig) -> dict[str, object]:
    # Worlds built before ``whole_function_words`` existed keep their directory and manifest.
    unset = set() if demo.encoder.whole_function_words else {"whole_function_words"}
    return {
        "generator_version": GENERATOR_VERSION,
        "generator_code": _generator_code_digest(),
        "seed": demo.seed,
        "sizes": demo.sizes.model_dump(),
        "encoder": demo.encoder.model_dump(exclude=unset),
    }


@functools.cache
def _generator_code_digest() -> str:
    """Ten hex digits of the generator's source, this module's included (it picks the encoder's
    pre-training files and whole words): edited code builds a world of its own."""
    digest = hashlib.sha256()
    for module in GENERATOR_MODULES:
        digest.update(Path(module.__file__).read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:10]
