"""Model Doctor (Feng et al., AAAI 2022): diagnose a classifier by the gradients of its class scores on the
channels of its deep convolutional layers, and treat it with the channel-wise and space-wise constraints.

Notation (the paper's): a feature map ``m_k^r`` is channel ``k`` of the output of convolutional layer
``r`` (the module's output, before its activation, so the layer is named by its ``named_modules()``
path as everywhere in hudd); ``y_n`` is the logit of class ``n``; ``sigma^j`` is the j-th of ``J`` noise
draws, uniform in ``[-delta, delta]``, added to the feature map. For one image the correlation of
channel ``k`` with class ``n`` is equation 4::

    a_k^{n,r} = 1/J sum_j sum_{h,w} |d y_n / d (m_k^r + sigma^j)|

and the class aggregate ``A[n, k]`` is its mean over ``T`` confident training images of class ``n``
(:func:`class_channel_correlation`; the paper's Fig. 2 uses the sum, which only rescales). Arrays:
per image ``(N, K)``, per class ``(n_classes, K)``; gradients ``(J, B, K, h, w)``.

How the gradients are taken: forward hooks on the chosen layers (:class:`FeatureTap`). The first
hooked layer (in forward order) repeats its output ``copies`` times along the batch (copy ``c`` of
image ``b`` at row ``c * B + b``), so the layers before it run once and the ``J`` noise draws (and, in
the treatment, the predicted and the second-ranked class) are one batched pass; each hooked layer
adds its own noise (drawn from a seeded :class:`torch.Generator`, so the same seed gives the same
numbers) and keeps the noisy map, a node of the graph. One ``torch.autograd.grad`` of the summed
selected logits then gives every row's gradient at once (rows are independent in eval mode, and
without BatchNorm in train mode), with ``create_graph=True`` when the result is a training loss.
The repetition assumes nothing computed before the first hooked layer is used after it (true of
the sequential architectures in :mod:`hudd.models`); when the model fails or returns the wrong
number of rows (a skip connection around the layer), the input is repeated instead, which costs
the layers before it ``copies`` times.

Design choices (where the paper leaves them open):

- layers: by default the last two ``Conv2d`` layers of the model ("deep layers");
- ``delta`` 0.1 by default, in the units of the feature map (alexnet-small's deep maps have a
  standard deviation of 3-5 on the demo, so the noise perturbs without drowning them);
- the aggregates are stored raw (the paper's values) and normalised per class to a maximum of 1
  (:func:`normalise`) wherever a threshold is applied, so ``v`` is scale-free: channel ``k`` is
  "unrelated" to class ``n`` when ``A[n, k] / max_k A[n, k] < v`` (default ``v`` = 0.5);
- equation 5 uses the predicted class ``y_n`` and the second-ranked class ``y_s`` (of the clean
  forward pass), as the paper; the ``J`` draws are averaged (the paper sums: a factor ``J``);
- each layer's constraint is divided by that layer's mean aggregate total ``mean_n sum_k A[n, k]``
  (how much gradient a confident training image puts on all channels), so the loss is about 1
  before treatment whatever the model's scale, and ``lambda`` (default 1) weighs it against the
  cross-entropy; it is averaged over the batch;
- space-wise constraint (equation 6): a foreground mask (1 on the object) is dilated by
  :func:`dilation_px` pixels (30/224 of the image side: the paper's best 30 px expansion at 224 px;
  9 px at 64 px) and inverted into the background mask (the paper's background mask "eroded to
  preserve the object boundary"), then area-averaged to each layer's feature-map size; images
  without a mask get no space-wise term (the paper annotated only some images);
- diagnosis: an error-inducing image's correlations with its *predicted* class, normalised to a
  maximum of 1, minus that class's normalised aggregate; the channels with the largest absolute
  departure are the diagnosis (positive: the image leans on a channel the class does not use;
  negative: it misses one the class relies on).

The code: :mod:`hudd.retrain.doctor_diagnosis` (the gradients, the correlations, the diagnosis) and
:mod:`hudd.retrain.doctor_treatment` (the constraints as a training loss, the background masks); this
module gathers their names.
"""

from .doctor_diagnosis import (DEFAULT_DELTA, DEFAULT_V, FeatureTap, channel_gradients, class_channel_correlation, conv_layers,
                               default_layers, diagnose, image_channel_correlation, normalise)
from .doctor_treatment import MASK_DILATION, DoctorConstraint, background_masks, dilation_px, doctor_loss

__all__ = [
    "DEFAULT_DELTA", "DEFAULT_V", "MASK_DILATION", "dilation_px", "default_layers", "conv_layers", "FeatureTap", "channel_gradients",
    "image_channel_correlation", "class_channel_correlation", "normalise", "diagnose", "background_masks", "doctor_loss", "DoctorConstraint",
]
