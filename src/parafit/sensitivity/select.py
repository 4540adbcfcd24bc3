"""Make a parameter interface with only the most sensitive parameters active."""

from pathlib import Path
from typing import Any

from parafit.errors import InputError, ResultsError

__all__ = ["select_interface"]


def select_interface(
    results: str | Path,
    output: str | Path | None = None,
    *,
    top: int | None = None,
    threshold: float | None = None,
    interface: str | Path | Any = None,
) -> tuple[list[str], Any]:
    """Activate the ``top`` N parameters (or those with mean sensitivity >=
    ``threshold``) of a sensitivity result, deactivate all others.

    Args:
        results: a results directory, its ``sensitivity/`` folder or the npz file.
        output: where to write the interface YAML (atomically); None: do not write.
        top, threshold: the selection (see :meth:`HSICResult.select`).
        interface: the interface to start from (path or object); default: the
            run's ``parameter_interface_with_sensitivities.yaml``.

    Returns:
        ``(selected names, the path written or the interface when output is None)``.

    Raises:
        ResultsError: no result or interface found.
        InputError: a selected parameter is missing from the interface.
    """
    from parafit._atomic import write_text_atomic
    from parafit.parameters import ParameterInterface
    from parafit.sensitivity.result import HSICResult

    results = Path(results)
    result = HSICResult.load(results)
    chosen = result.select(top=top, threshold=threshold)
    if interface is None:
        base = results if results.is_dir() else results.parent
        for candidate in (
            base / "sensitivity" / "parameter_interface_with_sensitivities.yaml",
            base / "parameter_interface_with_sensitivities.yaml",
        ):
            if candidate.is_file():
                interface = candidate
                break
        else:
            raise ResultsError(
                f"{results}: no parameter_interface_with_sensitivities.yaml; pass the "
                "interface to start from (--interface)."
            )
    if not isinstance(interface, ParameterInterface):
        interface = ParameterInterface.load(interface)
    missing = [n for n in chosen if n not in interface]
    if missing:
        raise InputError(
            f"parameters {missing} of the sensitivity result are not in the interface."
        )
    mean = dict(zip(result.labels, result.sensitivity_mean, strict=True))
    new = interface.with_active(chosen)
    for name in result.labels:
        if name in new:
            new = new.replace(name, sensitivity=float(mean[name]))
    if output is None:
        return chosen, new
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(output, new.to_yaml())
    return chosen, output
