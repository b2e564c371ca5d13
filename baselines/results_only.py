"""Results-folder entries: published methods that cannot run inside fusionbench.

Their official code is TensorFlow 1.x, needs a GPU-only script, or its checkpoint is not obtainable
here. Each entry says how to produce outputs with the official code; the user then passes the folder
with ``--results NAME=DIR`` (``fusionbench eval``/``score``). A results folder holds one image per
source pair, named ``<stem>.<png|jpg|bmp|tif>`` with the stem of the source pair and the size of the
sources. Where ``../shared/data/<dataset>/fused/<Method>/`` holds published outputs under the same
name (SDNet, FusionGAN, PMGI, RFN-Nest, U2Fusion, PIAFusion on TNO ...), the runner uses them
(``PairedDataset.published``).

Facts (paper, venue, year, repository, script names, checkpoint paths, output naming) were checked
against the official repositories' README and test scripts; what could not be checked says
"unverified". Licences are as stated by the repositories ("none stated" when neither README nor a
LICENSE file states one). Note that if a method's PyTorch weights appear under ``../shared/weights``
later, a port registers under the same name in ``fusionbench.baselines.ports`` and replaces the entry here
(registration keeps the first entry for a name, so remove it from ``ENTRIES`` then).
"""
from __future__ import annotations

from fusionbench.registry import MethodInfo, Paper

_NAMING = ("Then rename each output to the stem of its source pair (<stem>.png) in one folder and pass "
           "--results {name}=DIR.")


def _entry(name, display, paper, kind, tasks, inputs, colour, code, code_licence, howto, notes="", aliases=()):
    return MethodInfo(name=name, display=display, paper=paper, kind=kind, tasks=tuple(tasks), inputs=inputs,
                      colour=colour, weights=(), factory=None, code=code, code_licence=code_licence,
                      results_howto=howto.strip() + " " + _NAMING.format(name=name), notes=notes, aliases=tuple(aliases))


ENTRIES = [
    _entry(
        "defusion", "DeFusion",
        Paper("Fusion from Decomposition: A Self-Supervised Decomposition Approach for Image Fusion",
              "European Conference on Computer Vision (ECCV)", 2022),
        "cnn", ("ivif", "mfif", "meif"),
        "two RGB source images (3 channels)", "fuses RGB directly (in_nc: 3)",
        "https://github.com/erfect2020/DecompositionForFusion",
        "MIT as stated in the README (the LICENSE.txt it refers to was not in the snapshot we inspected)",
        "PyTorch 1.9, CUDA required (test.py calls .cuda()). Download the pretrained model from the Google Drive link "
        "in the README and set path.resume_state in option/test/IVF_Test_Dataset.yaml (RoadScene layout: dataroot "
        "with cropinfrared/ and crop_LR_visible/) or TIVF_Test_Dataset.yaml (TNO); the README asks to edit test.py "
        "to import the task's dataset module (data/visir_fusion_dataset.py for IVIF; test.py imports "
        "data/multi_exposure_dataset.py as shipped). Run `python test.py -opt option/test/IVF_Test_Dataset.yaml` "
        "(the README writes --opt options/test/...; the script's flag is -opt and the folder is option/). The fused "
        "image is results/<name in the yaml>/test_images/<stem>_recover.png (beside _common/_upper/_lower).",
        notes="A native port needs the pretrained model, hosted on Google Drive only (not obtainable here): the "
              "network is a plain PyTorch model, so with the file a port is a new baselines/ports module.",
    ),
    _entry(
        "ddfm", "DDFM",
        Paper("DDFM: Denoising Diffusion Model for Multi-Modality Image Fusion",
              "IEEE/CVF International Conference on Computer Vision (ICCV)", 2023),
        "diffusion", ("ivif", "mif"),
        "grey IR/VIS (or medical pair) in [-1, 1]", "grey out: Y of the sampled RGB image, min-max stretched",
        "https://github.com/Zhaozixiang1228/MMIF-DDFM", "none stated",
        "PyTorch; needs OpenAI guided-diffusion's unconditional 256x256 ImageNet DDPM checkpoint "
        "256x256_diffusion_uncond.pt (from github.com/openai/guided-diffusion) in ./models/ - a large pretrained "
        "model, ~2.2 GB; check that models/256x256_diffusion_uncond.pt is there and complete: when it cannot be "
        "loaded guided_diffusion/unet.py prints 'Randomly initialize' and sampling goes on with a random model, "
        "giving meaningless outputs without an error), and sampling (100 respaced steps, seed 3407) is slow "
        "without a GPU. sample.py lists input/ir/ but reads the infrared image from input/vi/<name> and the visible "
        "one from input/ir/<name> (the folders are swapped in the code): put the visible images in input/ir/ and "
        "the infrared ones in input/vi/ (same file names), run `python sample.py`; outputs output/recon/<stem>.png. "
        "sample.py crops both sources to a multiple of 32 in height and width (top-left kept), so outputs are "
        "smaller than sources whose size is not a multiple of 32: pad the outputs back or score on equally cropped "
        "sources. A native port would need the 2.2 GB guided-diffusion UNet and the DDFM EM-guided sampler; not "
        "attempted (the checkpoint is not obtainable here).",
    ),
    _entry(
        "segmif", "SegMiF",
        Paper("Multi-interactive Feature Learning and a Full-time Multi-modality Benchmark for Image Fusion and "
              "Segmentation", "IEEE/CVF International Conference on Computer Vision (ICCV)", 2023),
        "transformer", ("ivif",),
        "RGB visible + IR, plus a segmentation mask per image", "fuses Y; keeps the visible CrCb; min-max stretched RGB",
        "https://github.com/JinyuanLiu-CV/SegMiF", "none stated",
        "PyTorch, CUDA required. Checkpoints ./checkpoint/modelfusion-final2.pth and model-fusion_add_final2.pth from "
        "the Google Drive folder linked in the README. test_fusion.py hard-codes its data and output paths "
        "(vi_path .../Visible/, ir_path .../Infrared/, label_path .../Label/, mask_path .../Mask2/, save path "
        ".../Fused_images/): edit them to your folders (the loader also reads a label and a mask per image), run "
        "`python test_fusion.py`; outputs <save path>/<file name>.",
        notes="A native port needs the two checkpoints, hosted on Google Drive only (not obtainable here), and the "
              "per-image segmentation label and mask its loader reads.",
    ),
    _entry(
        "fusiongan", "FusionGAN",
        Paper("FusionGAN: A generative adversarial network for infrared and visible image fusion",
              "Information Fusion", 2019),
        "gan", ("ivif",),
        "grey IR + grey VIS in [-1, 1]", "grey in, grey out",
        "https://github.com/jiayi-ma/FusionGAN", "none stated",
        "TensorFlow 1.x (scipy.misc). Put the pairs in Test_ir/ and Test_vi/ as 1.bmp, 2.bmp, ... (test_one_image.py "
        "reads *.jpg/*.bmp sorted by the integer name), keep the checkpoint ./checkpoint/CGAN_120/CGAN.model-3, run "
        "`python test_one_image.py`; outputs result/epoch3/F9_00.bmp, F9_01.bmp, ... for the 1st, 2nd, ... pair "
        "(0-based index).",
        notes="TNO outputs are in ../shared/data/tno/fused/FusionGAN.",
    ),
    _entry(
        "u2fusion", "U2Fusion",
        Paper("U2Fusion: A Unified Unsupervised Image Fusion Network",
              "IEEE Transactions on Pattern Analysis and Machine Intelligence", 2022),
        "cnn", ("ivif", "mif", "mfif", "meif"),
        "first source (VIS / PET / over / far) as Y of colour or grey, second grey", "fuses Y of the first source; grey out",
        "https://github.com/hanna-xu/U2Fusion", "none stated",
        "TensorFlow 1.x (scipy.misc). test_main.py restores ./model/model.ckpt (the repository holds model/model.ckpt.*; "
        "the README also links the trained model on Baidu Pan). Put the pairs in test_imgs/vis-ir/<Dataset>/vis/ and .../ir/ (same file "
        "names), set path/output_path at the top of test_main.py (commented blocks for TNO, RoadScene, medical, "
        "multi-exposure, multi-focus), run `python test_main.py`; outputs results/vis-ir/<Dataset>/<stem>.png.",
        notes="Published 2022 (vol. 44); early access 2020. TNO outputs are in ../shared/data/tno/fused/U2Fusion.",
    ),
    _entry(
        "pmgi", "PMGI",
        Paper("Rethinking the Image Fusion: A Fast Unified Image Fusion Network based on Proportional Maintenance of "
              "Gradient and Intensity", "AAAI Conference on Artificial Intelligence", 2020),
        "cnn", ("ivif", "mif", "mfif", "meif"),
        "grey IR + grey VIS in [-1, 1]", "grey for IVIF; the authors' MATLAB scripts handle YCbCr/IHS colour for the other tasks",
        "https://github.com/HaoZhang1018/PMGI_AAAI2020", "none stated",
        "TensorFlow 1.x (scipy.misc). IVIF: in Code_PMGI/IR_VI/, put the pairs in Test_ir/ and Test_vi/ as 1.bmp, "
        "2.bmp, ... (sorted by the integer name), run `python test_one_image.py`; its loop restores "
        "./checkpoint/CGAN_120/CGAN.model-1 (this IR_VI checkpoint was not in the snapshot we inspected: unverified) "
        "and writes result/epoch1/F9_00.bmp, F9_01.bmp, ... (0-based index).",
        notes="TNO outputs are in ../shared/data/tno/fused/PMGI.",
    ),
    _entry(
        "rfn-nest", "RFN-Nest",
        Paper("RFN-Nest: An end-to-end residual fusion network for infrared and visible images", "Information Fusion", 2021),
        "autoencoder", ("ivif",),
        "grey IR + grey VIS", "grey (RGB inputs are fused channel by channel when flag_img=True)",
        "https://github.com/hli1221/imagefusion-rfn-nest", "none stated",
        "PyTorch, CUDA required (.cuda()). The autoencoder and RFN checkpoints are set in args_fusion.py "
        "(resume_nestfuse, fusion_model); that file and the models were not in the snapshot we inspected "
        "(unverified where they are published). Put the pairs in images/21_pairs_tno/ir/ and .../vis/ (test_21pairs.py "
        "finds the visible file by replacing ir/ with vis/ and IR with VIS, or i. with v.), run "
        "`python test_21pairs.py`; outputs outputs/alpha_1e4_21/fused_rfnnest_700_wir_6.0_wvi_3.0_21_res/"
        "fused_rfnnest_700_wir_6.0_wvi_3.0_<ir file name>.",
        notes="TNO outputs are in ../shared/data/tno/fused/RFN-Nest.",
        aliases=("rfnnest",),
    ),
    _entry(
        "piafusion", "PIAFusion",
        Paper("PIAFusion: A progressive infrared and visible image fusion network based on illumination aware",
              "Information Fusion", 2022),
        "cnn", ("ivif",),
        "grey IR + RGB visible", "fuses IR with the visible Y; keeps the visible CbCr (RGB out)",
        "https://github.com/Linfeng-Tang/PIAFusion", "MIT (LICENSE file in the repository)",
        "TensorFlow 1.14 (official); a PyTorch re-implementation by linklist2 exists (github.com/linklist2/PIAFusion_pytorch) "
        "but is not the authors' code. Put the pairs in test_data/<DataSet>/ir and test_data/<DataSet>/vi with DataSet "
        "TNO, RoadScene (integer file names: test sorts by int(name[:-4])) or MSRS, run `python main.py "
        "--is_train=False --model_type=PIAFusion --DataSet=TNO`; it loads the fusion checkpoint under ./checkpoint "
        "(only checkpoint/Illumination was in the snapshot we inspected: unverified) and writes "
        "Fusion_results/<DataSet>/<same file name>.",
        notes="TNO outputs are in ../shared/data/tno/fused/PIAFusion; a few MSRS/RoadScene ones in msrs/ and roadscene/.",
    ),
]
