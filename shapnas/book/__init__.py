"""The companion book: executing the notebooks per dataset (:mod:`.run_notebooks`) in a Jupyter kernel of
the project's interpreter (:mod:`.kernel_manager`), the generated pages (:mod:`.pages`) and the Jupyter Book
build (:mod:`.build`)."""

from shapnas._facade import lazy_exports

__getattr__ = lazy_exports(__name__, ("build", "pages", "run_notebooks", "kernel_manager", "findings",
                                        "workshop_values"))
