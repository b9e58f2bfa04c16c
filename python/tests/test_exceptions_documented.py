"""Every exception class shmht exports is documented in python/README.md's Exceptions
table, with its base classes, so a new one cannot be added silently."""

import pathlib
import re

import shmht

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def exported_exception_classes():
    return [obj for obj in vars(shmht).values()
            if isinstance(obj, type) and issubclass(obj, shmht.Error) and obj is not shmht.Error]


def documented_rows():
    text = README.read_text()
    table = text[text.index("## Exceptions"):]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `shmht\.(\w+)` \|([^|]*)\|", table, re.M)}


def test_every_exception_class_is_documented_with_its_bases():
    rows = documented_rows()
    classes = exported_exception_classes()
    assert len(classes) >= 14
    for cls in classes:
        assert cls.__name__ in rows, f"shmht.{cls.__name__} is missing from the README's Exceptions table"
        builtin_bases = [b for b in cls.__mro__[1:]
                         if b.__module__ == "builtins" and b not in (Exception, BaseException, object)]
        if builtin_bases:  # the most specific one, e.g. PermissionError rather than OSError
            assert builtin_bases[0].__name__ in rows[cls.__name__], \
                f"shmht.{cls.__name__} is also a {builtin_bases[0].__name__}, which the README does not say"
        else:
            assert rows[cls.__name__].strip() == "", f"shmht.{cls.__name__} is listed with a base it does not have"
