"""Conformance kits: the contract checks every kind of a component family must pass.

One module per family, each with a kit class whose ``test_*`` methods are the checks; a test module
subclasses the kit under a ``Test...`` name and names the family's union, and pytest then runs every
check on every kind of that union (a new kind in the union is checked without further edits)::

    from trainyard.io.readers import ReaderKind
    from trainyard.testing.readers import ReaderKit


    class TestReaders(ReaderKit):
        union = ReaderKind

=======================================  =========================================================
``trainyard.testing.components``         what every kind passes: frozen, extra keys refused, its
                                         KIND chosen by the family's union, JSON Schema, re-validation
``trainyard.testing.readers``            ``ReaderKit``: files the kit writes, check() messages, lineage
``trainyard.testing.splitters``          ``SplitterKit``: disjoint positional folds, determinism
``trainyard.testing.metrics``            ``MetricKit``: direction, probabilities, a stable name
``trainyard.testing.models``             ``ModelKit``: fit, predict, predict_proba, determinism
``trainyard.testing.alerts``             ``AlertKit``: delivery (log records, a 127.0.0.1 webhook), secrets
=======================================  =========================================================

A check that a kind is known to fail is listed in the kit subclass's ``expected_failures`` (a strict
xfail, with the defect as its reason). The kits need pytest and jsonschema, which are in Trainyard's
``dev`` dependency group, not in its runtime dependencies: nothing in the product imports this
package (the import-linter layers contract puts it on top). For readable assertion failures, call
``pytest.register_assert_rewrite("trainyard.testing")`` before the kits are imported (tests/kits does).
The data is made by the kits themselves (numpy, pandas, scikit-learn's bundled data sets): nothing is
downloaded, and the only network traffic is the alert kit's, to its own server on 127.0.0.1.
"""
