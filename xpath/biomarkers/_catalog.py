"""``feature_catalog()``: definition, unit and reference of every feature xpath.biomarkers computes."""

from __future__ import annotations

from ._intensity import GLCM_PROPS, INTENSITY_STATS, STAIN_CHANNELS

__all__ = ["feature_catalog"]

_SKI = "scikit-image regionprops (van der Walt et al. 2014)"
_WDBC = "Street, Wolberg & Mangasarian 1993, Proc. SPIE 1905 (WDBC)"
_HARALICK = "Haralick, Shanmugam & Dinstein 1973, IEEE SMC-3; scikit-image graycoprops"
_RUIFROK = "Ruifrok & Johnston 2001, Anal. Quant. Cytol. Histol. 23 (colour deconvolution)"

_SHAPE = {
    "area_um2": ("number of pixels x mpp²", "µm²", _SKI),
    "area_px": ("number of pixels", "px", _SKI),
    "perimeter_um": (("perimeter of the 4-connected border, corners weighted 1, √2, (1+√2)/2 "
                     "(identical to skimage.measure.perimeter)"), "µm", _SKI),
    "equivalent_diameter_um": ("diameter of the disc of the same area, sqrt(4 A / π)", "µm", _SKI),
    "major_axis_um": ("4 sqrt(λ1) of the inertia tensor (ellipse with the same second moments)", "µm", _SKI),
    "minor_axis_um": ("4 sqrt(λ2) of the inertia tensor", "µm", _SKI),
    "eccentricity": ("sqrt(1 − λ2/λ1) of the equivalent ellipse", "1", _SKI),
    "orientation_rad": ("angle between the row axis and the major axis, in [−π/2, π/2]", "rad", _SKI),
    "convex_area_um2": (("pixels whose centre lies in the convex hull of the object's pixel-edge midpoints, x mpp² "
                        "(identical to regionprops area_convex)"), "µm²", _SKI),
    "convex_perimeter_um": ("perimeter of the convex image's boundary polygon (its 0.5 iso-contour)", "µm", _SKI),
    "solidity": ("area / convex area (1 for convex objects)", "1", _SKI),
    "extent": ("area / bounding-box area", "1", _SKI),
    "circularity": ("4 π area / perimeter² (≈1 for a disc)", "1", "Chen et al. 2025 (PathSegmentor)"),
    "irregularity": ("1 − circularity (shape irregularity)", "1", "Chen et al. 2025 (PathSegmentor)"),
    "feret_max_um": (("largest caliper width of the convex image's 0.5 iso-contour "
                     "(identical to regionprops feret_diameter_max)"), "µm", _SKI),
    "feret_min_um": ("smallest caliper width of the same polygon (rotating calipers)", "µm", "Feret 1930"),
}
_WDBC_DEF = {
    "radius_um": ("mean distance from the centroid to the boundary, over 64 equally spaced angles", "µm"),
    "perimeter_um": ("perimeter of the 64-vertex radial boundary polygon", "µm"),
    "area_um2": ("area of the 64-vertex radial boundary polygon", "µm²"),
    "texture": ("standard deviation of the grey level (0-255, rgb2gray weights) inside the object", "grey level"),
    "smoothness": ("mean |r_k − (r_{k−1} + r_{k+1})/2| / mean r: local variation of radius lengths", "1"),
    "compactness": (("perimeter² / (4 π area) − 1 of the boundary polygon (0 for a circle); WDBC's "
                    "'perimeter²/area − 1' scaled by 4π, the scale of the published values (0.02–0.35)"), "1"),
    "concavity": ("mean depth of the boundary vertices inside the convex hull of the boundary / mean radius",
                  "1"),
    "concave_points": (("number of concave portions: runs of boundary vertices deeper than 5% of the mean "
                       "radius inside the hull"), "count"),
    "symmetry": (("Σ|ℓ(φ+t) − ℓ(φ−t)| sin t / Σ(ℓ(φ+t) + ℓ(φ−t)) sin t: relative difference of the perpendiculars "
                 "to the major axis φ (principal axis of the boundary points; WDBC: longest chord) on its two "
                 "sides"), "1"),
    "fractal_dimension": (("coastline approximation − 1: minus the slope of log perimeter against log ruler "
                          "length, rulers of 1, 2, 4, 8 boundary steps"), "1"),
}
_STAT_DEF = {
    "mean": "mean", "std": "population standard deviation", "min": "minimum", "max": "maximum",
    "median": "median", "iqr": "interquartile range (q75 − q25)", "skew": "skewness (Fisher, biased)",
    "kurtosis": "excess kurtosis (Fisher, biased)",
}
_GLCM_DEF = {
    "contrast": "Σ P(i,j) (i − j)²", "dissimilarity": "Σ P(i,j) |i − j|",
    "homogeneity": "Σ P(i,j) / (1 + (i − j)²) (inverse difference moment)", "asm": "Σ P(i,j)² (angular second moment)",
    "energy": "sqrt(ASM)", "correlation": "Σ P(i,j)(i − μ)(j − μ) / σ² (1 if σ = 0)",
    "entropy": "−Σ P(i,j) ln P(i,j) (nats, as scikit-image)",
}
_SPATIAL = {
    "cell.spatial.degree": ("number of graph neighbours", "count", "squidpy spatial_neighbors"),
    "cell.spatial.neighbour_distance_mean_um": ("mean length of the cell's graph edges", "µm", ""),
    "cell.spatial.neighbour_distance_min_um": ("shortest graph edge of the cell", "µm", ""),
    "cell.spatial.local_density_per_mm2": ("other cells within the density radius / disc area", "1/mm²", ""),
    "cell.spatial.clustering_coefficient": ("triangles through the cell / (d(d−1)/2), undirected graph", "1",
                                            "Watts & Strogatz 1998"),
    "cell.spatial.neighbours_frac.{class}": ("fraction of graph neighbours of class {class}", "1", ""),
    "cell.spatial.nearest_um.{class}": ("distance to the nearest other cell of class {class}", "µm", ""),
    "cell.spatial.region_distance_um.{region}": (("signed distance to the boundary of region {region}: "
                                                 "negative inside, positive outside"), "µm", ""),
    "image.spatial.enrichment_z.{a}__{b}": (("neighbourhood enrichment z-score of a→b graph edges against "
                                            "label permutations"), "z", "Schapiro et al. 2017; squidpy"),
    "image.spatial.morisita_horn.{a}__{b}": ("Morisita–Horn overlap of quadrat counts", "1", "Horn 1966"),
    "image.spatial.ripley_l_um.{class}.r{r}": ("Ripley's L(r) = sqrt(K/π) − r, translation edge correction",
                                               "µm", "Ripley 1977"),
    "image.spatial.immune_within_{d}um_of_tumour": ("fraction of immune cells with a tumour cell within d µm",
                                                    "1", ""),
    "image.spatial.{graph}_{stat}": (("mean, std, min/max ratio, disorder 1 − 1/(1 + std/mean) of Delaunay edge "
                                     "lengths, triangle areas, Voronoi cell areas, MST edge lengths"), "µm or µm²",
                                     "Doyle et al. 2012"),
    "region.area_um2.{region}": ("area of the tissue region", "µm²", ""),
    "region.fraction.{region}": ("area fraction of the tissue region", "1", ""),
    "region.tumour_stroma_ratio": ("tumour area / stroma area", "1", "Mesker et al. 2007"),
    "region.density_per_mm2.{class}.{region}": ("cells of the class in the region / region area", "1/mm²", ""),
    "count": ("objects (nuclei) found in the image", "1", ""),
    "count.{class}": ("objects of the class in the image", "1", ""),
    "density_per_mm2": ("objects per mm² of tissue (the whole image when no region prompt is given)", "1/mm²", ""),
    "density_per_mm2.{class}": ("objects of the class per mm² of tissue", "1/mm²", ""),
    "fraction.{class}": ("fraction of the image's objects that are of the class", "1", ""),
    "gland.count": ("glands: connected components of the gland mask of at least 200 µm²", "1", ""),
    "gland.density_per_mm2": ("glands per mm² of image", "1/mm²", ""),
    "til.intratumoral_per_mm2": ("lymphocytes in tumour regions / tumour area", "1/mm²", "Salgado et al. 2015"),
    "til.stromal_per_mm2": ("lymphocytes in stroma / stroma area", "1/mm²", "Salgado et al. 2015"),
}


def feature_catalog(compartment: str = "nucleus") -> dict[str, dict[str, str]]:
    """Every feature name with its definition, unit and reference.

    Parameters
    ----------
    compartment : str
        Prefix used for the per-object families (as in ``cell_table(compartment=...)``).

    Returns
    -------
    dict
        ``name -> {"definition", "unit", "reference"}``. Names with ``{class}``,
        ``{region}``, ``{a}``/``{b}`` are templates filled with class/region names.

    Examples
    --------
    >>> feature_catalog()["nucleus.shape.area_um2"]["unit"]
    'µm²'
    """
    cat: dict[str, dict[str, str]] = {}

    def add(name, definition, unit, ref=""):
        cat[name] = {"definition": definition, "unit": unit, "reference": ref}

    p = compartment + "."
    for k, (d, u, r) in _SHAPE.items():
        add(f"{p}shape.{k}", d, u, r)
    for i in range(1, 8):
        add(f"{p}moments.hu_{i}", f"Hu's invariant moment {i} of the normalised central moments", "1",
            "Hu 1962, IRE Trans. Inf. Theory 8")
    for i in range(1, 9):
        add(f"{p}fourier.fourier_{i}", f"|harmonic {i}| / |harmonic 0| of the 64-angle radial profile", "1",
            "Zahn & Roskies 1972")
    for k, (d, u) in _WDBC_DEF.items():
        add(f"{p}wdbc.{k}", d, u, _WDBC)
    for comp in (compartment, "cytoplasm"):
        for ch in STAIN_CHANNELS:
            for st in INTENSITY_STATS:
                add(f"{comp}.stain.{ch}.{st}", f"{_STAT_DEF[st]} of the {ch} optical density "
                    f"(skimage rgb2hed{'; residual = its DAB channel' if ch == 'residual' else ''}) "
                    f"in the {'ring around the object' if comp == 'cytoplasm' else 'object'}", "OD", _RUIFROK)
    add("cytoplasm.shape.area_um2", "area of the ring grown around the object into background", "µm²")
    for prop in GLCM_PROPS:
        for agg, what in (("mean", "mean"), ("range", "max − min")):
            add(f"{p}texture.glcm_{prop}.{agg}", f"{what} over distances 1, 2 px and angles 0, 45, 90, 135° of "
                f"{_GLCM_DEF[prop]} of the symmetric normalised GLCM of 32 grey levels inside the object",
                "1", _HARALICK)
    for k, (d, u, r) in _SPATIAL.items():
        add(k, d, u, r)
    for k in ("area_um2", "solidity", "eccentricity", "circularity"):
        d, u, r = _SHAPE[k]
        add(f"gland.shape.{k}", f"{d} (of one gland: a connected component of the gland mask)", u, r)
    return cat
