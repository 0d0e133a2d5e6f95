"""The steps of a training run, in order, each a function with a typed input and result.

1. :func:`training.steps.prepare.prepare_data`: split the rows, map labels to class ids.
2. :func:`training.steps.encode.encode_texts`: tokenise, fit the vocabulary, pad sequences.
3. :func:`training.steps.train.train_model`: build, initialise and fit the network.
4. :func:`training.steps.assess.assess_model`: held-out metrics, duplicate check, baseline.
5. :func:`training.steps.bundle.write_bundle`: report, figures, split record and bundle.

:func:`training.fit.fit` runs them in that order.
"""
