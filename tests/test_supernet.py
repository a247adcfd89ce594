import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ovo.export import export_subnet, load_exported, save_exported
from ovo.space import Arch, ArchError, load_space
from ovo.supernet import SuperViT, ViTConfig

SMALL_IMG = ViTConfig(img_size=32, patch_size=8, num_classes=10, drop_path_rate=0.0)


def archs_of(space, n, seed=0):
    rng = random.Random(seed)
    return [space.min_arch, space.max_arch] + [space.sample(rng) for _ in range(n)]


@pytest.fixture(scope="module", params=["nano", "tiny", "small", "base"])
def supernet(request):
    torch.manual_seed(0)
    return SuperViT(load_space(request.param), SMALL_IMG).eval()


def test_closed_form_params_and_macs_match_the_exported_model(supernet):
    for arch in archs_of(supernet.space, 4):
        model = export_subnet(supernet, arch)
        assert supernet.num_params(arch) == sum(p.numel() for p in model.parameters())
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.randn(1, 3, 32, 32))
        assert 2 * supernet.num_macs(arch) == counter.get_total_flops()


def test_costs_with_avg_pool_and_other_input():
    cfg = ViTConfig(img_size=48, patch_size=16, in_chans=1, num_classes=7, global_pool="avg")
    net = SuperViT(load_space("nano"), cfg)
    for arch in archs_of(net.space, 3):
        model = export_subnet(net, arch)
        assert net.num_params(arch) == sum(p.numel() for p in model.parameters())


def test_costs_are_monotone_between_min_and_max():
    net = SuperViT(load_space("tiny"), SMALL_IMG)
    lo, hi = net.space.min_arch, net.space.max_arch
    for arch in archs_of(net.space, 30)[2:]:
        assert net.num_params(lo) <= net.num_params(arch) <= net.num_params(hi)
        assert net.num_macs(lo) <= net.num_macs(arch) <= net.num_macs(hi)


def test_export_logits_equal_supernet_logits(supernet):
    x = torch.randn(4, 3, 32, 32)
    for arch in archs_of(supernet.space, 20, seed=1):
        with torch.no_grad():
            expected = supernet(x, arch)
            got = export_subnet(supernet, arch).eval()(x)
        scale = expected.abs().max().clamp_min(1.0)
        assert (got - expected).abs().max() <= 1e-5 * scale, arch.short()


def test_export_with_avg_pool_and_heads_not_dividing_embed():
    # nano: embed 64 with 3 heads (3*64=192 != 64) must build and match
    cfg = ViTConfig(img_size=32, patch_size=8, num_classes=5, global_pool="avg")
    net = SuperViT(load_space("nano"), cfg).eval()
    arch = Arch(64, (3, 2, 4, 3), (2.0, 3.0, 4.0, 2.0))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            export_subnet(net, arch).eval()(x), net(x, arch), atol=1e-5, rtol=0
        )


def test_saved_export_reloads_to_identical_logits(tmp_path):
    net = SuperViT(load_space("nano"), SMALL_IMG).eval()
    arch = net.space.sample(random.Random(3))
    model = export_subnet(net, arch).eval()
    save_exported(model, arch, net.cfg, net.space.head_dim, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    reloaded = load_exported(tmp_path)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(reloaded(x), model(x))


def test_gradients_reach_only_the_slices_a_subnet_uses():
    net = SuperViT(load_space("nano"), SMALL_IMG)
    arch = Arch(96, (2, 3, 4, 2), (2.0, 3.0, 2.0, 4.0))
    net(torch.randn(2, 3, 32, 32), arch).sum().backward()
    e, hd = arch.embed_dim, 64
    g = {n: p.grad for n, p in net.named_parameters()}
    assert g["patch_embed.proj.weight"][e:].abs().sum() == 0
    assert g["patch_embed.proj.weight"][:e].abs().sum() > 0
    assert g["pos_embed"][..., e:].abs().sum() == 0
    for i in range(arch.depth):
        a, m = arch.num_heads[i] * hd, arch.mlp_hidden(i)
        qkv = g[f"blocks.{i}.attn.qkv.weight"]
        assert qkv[3 * a :].abs().sum() == 0 and qkv[:, e:].abs().sum() == 0
        assert qkv[: 3 * a, :e].abs().sum() > 0
        assert g[f"blocks.{i}.attn.qkv.bias"][3 * a :].abs().sum() == 0
        assert g[f"blocks.{i}.attn.proj.weight"][:, a:].abs().sum() == 0
        assert g[f"blocks.{i}.mlp.fc1.weight"][m:].abs().sum() == 0
        assert g[f"blocks.{i}.mlp.fc2.weight"][:, m:].abs().sum() == 0
        assert g[f"blocks.{i}.mlp.fc2.weight"][e:].abs().sum() == 0
        assert g[f"blocks.{i}.norm1.weight"][e:].abs().sum() == 0
    for i in range(arch.depth, len(net.blocks)):  # layers beyond the depth get no gradient
        assert all(p.grad is None for p in net.blocks[i].parameters())
    assert g["head.weight"][:, e:].abs().sum() == 0


def test_no_state_leaks_between_consecutive_forwards():
    net = SuperViT(load_space("nano"), SMALL_IMG).eval()
    x = torch.randn(2, 3, 32, 32)
    a, b = net.space.max_arch, net.space.min_arch
    with torch.no_grad():
        first_a = net(x, a)
        net(x, b)
        again_a = net(x, a)
        b_alone = SuperViT(load_space("nano"), SMALL_IMG)
        b_alone.load_state_dict(net.state_dict())
        b_alone.eval()
        assert torch.equal(first_a, again_a)
        assert torch.equal(net(x, b), b_alone(x, b))


def test_arch_larger_than_the_supernet_is_refused():
    net = SuperViT(load_space("nano"), SMALL_IMG)
    with pytest.raises(ArchError, match="does not fit"):
        net(torch.randn(1, 3, 32, 32), Arch.uniform(256, 4, 2, 2.0))


def test_no_weight_decay_and_init_like_timm():
    net = SuperViT(load_space("tiny"), SMALL_IMG)
    assert net.no_weight_decay() == {"pos_embed", "cls_token"}
    w = net.blocks[0].mlp.fc1.weight
    assert abs(w.std().item() - 0.02) < 0.003  # timm: trunc_normal_(std=.02)
    assert net.blocks[0].mlp.fc1.bias.abs().sum() == 0
    assert net.cls_token.abs().max() < 1e-4
