"""Learner families: the interface (`base`), one module per library, ensembles, and the
catalog that names them."""
