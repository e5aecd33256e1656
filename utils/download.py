"""Downloads that never leave a half-finished dataset behind.

Used by :mod:`utils.data`; lessons never call this module themselves.

The rules, because a classroom of laptops will hit every failure mode:

- a file is streamed into a temporary file next to its destination, its checksum is computed
  while streaming, and only a verified file is renamed into place;
- an archive is extracted into a hidden temporary folder next to the data folder, its layout is
  validated, and only then is the dataset folder renamed into place. A dataset folder that
  exists was therefore complete when it appeared; an interrupted run leaves at most a hidden
  ``.NAME.partial-*`` folder, which nothing reads and the next run does not reuse;
- every failure raises a :class:`DataError` whose message says what happened and how to fix it
  (no network: where to put the files by hand; bad checksum: which file, expected vs got).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Callable

from tqdm import tqdm

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30.0  # per socket operation, not for the whole download
COMPLETE_MARKER = ".complete"  # written into a dataset folder we installed: where it came from


class DataError(RuntimeError):
    """A dataset could not be found, downloaded, verified or decoded; the message says how to fix it."""


class DownloadError(DataError):
    """The network or the server failed: no connection, timeout, HTTP error, dropped connection."""


class ChecksumError(DataError):
    """A downloaded file does not have the published checksum."""


class DatasetMissingError(DataError, FileNotFoundError):
    """A dataset is not on disk and cannot (or may not) be downloaded."""


class IncompleteDatasetError(DataError):
    """A dataset folder exists but does not hold what it should (partial copy or extraction)."""


class CorruptImageError(DataError):
    """An image file cannot be decoded (truncated, damaged, or not an image)."""


def parse_checksum(checksum: str | None) -> tuple[str, str] | None:
    """Split ``"sha256:<hex>"`` or ``"md5:<hex>"`` into (algorithm, hex digest); ``None`` stays ``None``."""
    if checksum is None:
        return None
    algorithm, _, digest = checksum.partition(":")
    if algorithm not in {"sha256", "md5"} or not digest:
        raise ValueError(f"checksum must look like 'sha256:<hex>' or 'md5:<hex>', got {checksum!r}")
    return algorithm, digest.lower()


def file_checksum(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK_BYTES), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _offline_error(url: str, err: BaseException, manual_help: str) -> DownloadError:
    reason = getattr(err, "reason", None) or err
    return DownloadError(
        f"No network: could not download {url} ({type(reason).__name__}: {reason}).\n"
        f"Either connect to the internet and run again, or put the files there by hand:\n{manual_help}\n"
        "or set the environment variable COURSE_DATA_DIR to a folder that already holds them."
    )


def _progress_bar(total: int | None, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stdout, mininterval=0.5, leave=False, disable=_quiet())


def _quiet() -> bool:
    return os.environ.get("COURSE_QUIET", "").strip().lower() in {"1", "true", "yes", "on"}


def _stream(url: str, out, hasher, manual_help: str, timeout: float) -> int:
    """Copy ``url`` into the open file ``out``, updating ``hasher``; return the byte count."""
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with _progress_bar(total, f"download {url.rsplit('/', 1)[-1]}") as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    hasher.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise DownloadError(
            f"The server answered '{err.code} {err.reason}' for {url}: the file may have moved.\n"
            f"Set COURSE_DATA_MIRROR to a mirror holding the same files, or put them there by hand:\n{manual_help}"
        ) from err
    except http.client.IncompleteRead as err:
        raise DownloadError(
            f"The connection dropped while downloading {url} after {received + len(err.partial)} bytes; "
            "nothing was kept. Run the same command again."
        ) from err
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
            http.client.HTTPException) as err:
        raise _offline_error(url, err, manual_help) from err
    if total is not None and received != total:
        raise DownloadError(
            f"The connection dropped while downloading {url}: got {received} of {total} bytes; "
            "nothing was kept. Run the same command again."
        )
    return received


def download(url: str, dest: str | Path, checksum: str | None = None, *,
             manual_help: str = "", timeout: float | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically and verify ``checksum`` ("sha256:..." or "md5:...").

    The bytes go into a hidden temporary file in ``dest``'s folder (same file system, so the final
    rename is atomic); a failed or interrupted download leaves nothing at ``dest``.
    """
    dest = Path(dest)
    expected = parse_checksum(checksum)
    hasher = hashlib.new(expected[0] if expected else "sha256")
    created = _make_dirs(dest.parent)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    finished = False
    try:
        with os.fdopen(fd, "wb") as out:
            _stream(url, out, hasher, manual_help, TIMEOUT_S if timeout is None else timeout)
        if expected and hasher.hexdigest() != expected[1]:
            raise ChecksumError(
                f"Checksum mismatch for {dest.name} downloaded from {url}:\n"
                f"  expected {expected[0]} {expected[1]}\n"
                f"  got      {expected[0]} {hasher.hexdigest()}\n"
                "The download is damaged or the file on the server changed; it was deleted. "
                "Run the same command again; if it fails again, put a verified copy there by hand:\n"
                f"{manual_help}"
            )
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; shared data folders must stay readable
        os.replace(tmp_name, dest)
        finished = True
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        if not finished:
            _remove_if_empty(created)
    return dest


def _make_dirs(path: Path) -> list[Path]:
    """Create ``path`` and check that it is writable; return the folders created, so a failure can remove them."""
    created = [folder for folder in (path, *path.parents) if not folder.exists()][::-1]
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=path)
        probe.close()
    except OSError as err:
        raise DataError(
            f"Cannot write into {path} ({err.strerror or err}): the data folder is read-only or missing.\n"
            "Set the environment variable COURSE_DATA_DIR to a folder you can write to, and run again."
        ) from err
    return created


def _remove_if_empty(folders: list[Path]) -> None:
    """Undo :func:`_make_dirs` after a failure: a failed download leaves no empty folders behind."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


def extract(archive: str | Path, into: str | Path) -> None:
    """Extract a .zip, .tar, .tgz or .tar.gz archive into ``into``, refusing paths that escape it."""
    archive, into = Path(archive), Path(into)
    into.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(into)  # drops absolute paths and '..' components
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tarred:
                tarred.extractall(into, filter="data")  # refuses links and paths outside `into`
        else:
            raise DataError(f"{archive.name} is neither a zip nor a tar archive; delete it and download it again.")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as err:
        raise DataError(f"Cannot extract {archive.name} ({err}): the archive is damaged. Run the command again.") from err


def install_archive(url: str, checksum: str | None, root: str | Path, folder: str,
                    validate: Callable[[Path], None], manual_help: str = "", *,
                    archive_folder: str | None = None, convert: Callable[[Path, Path], None] | None = None) -> Path:
    """Download an archive holding ``folder/``, extract, validate, and rename it to ``root/folder``.

    ``validate(path)`` receives the extracted folder and raises if its layout is wrong (for archives
    without a published checksum this is the only check). The download and the extraction happen in
    a hidden ``root/.FOLDER.partial-*`` folder that is always removed, so ``root/folder`` appears
    whole or not at all.

    An archive whose files are not laid out as the dataset folder (CIFAR-10's pickled batches)
    names its top-level folder in ``archive_folder``; ``convert(archive_dir, out)`` then writes the
    dataset folder ``out`` from it, inside the same hidden folder, before validation.
    """
    root = Path(root)
    target = root / folder
    created = _make_dirs(root)
    work = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder}.partial-"))
    finished = False
    try:
        archive = download(url, work / url.rsplit("/", 1)[-1], checksum, manual_help=manual_help)
        extract(archive, work / "extracted")
        archive.unlink()
        extracted = work / "extracted" / (archive_folder or folder)
        if not extracted.is_dir():
            found = sorted(p.name for p in (work / "extracted").iterdir())
            raise DataError(f"{archive.name} from {url} has no top-level folder {extracted.name}/ (found {found}).")
        if convert is not None:
            convert(extracted, work / "converted" / folder)
            extracted = work / "converted" / folder
        validate(extracted)
        provenance = {"url": url, "checksum": checksum, "installed": time.strftime("%Y-%m-%d %H:%M:%S")}
        (extracted / COMPLETE_MARKER).write_text(json.dumps(provenance) + "\n")
        try:
            os.rename(extracted, target)
        except OSError:
            if not target.is_dir():  # a parallel run finishing first is fine; anything else is not
                raise
        finished = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not finished:
            _remove_if_empty(created)
    return target
