// GGUF v2/v3 parsing with every length, count and offset checked against the
// bytes that remain, so a corrupt file raises instead of crashing or hanging.
// Not a general binary-format library; no writing.
#include "gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "../kernels/quant_types.h"

namespace pyllm {

namespace {

constexpr int kMaxArrayDepth = 4;
constexpr uint64_t kMaxDims = 4;

std::string at(uint64_t off) { return " (at byte " + std::to_string(off) + ")"; }

// Well-formed UTF-8: no overlong forms, surrogates or code points past U+10FFFF.
bool valid_utf8(const uint8_t* s, uint64_t n) {
    uint64_t i = 0;
    while (i < n) {
        const uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len;
        uint32_t cp;
        if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
        else return false;
        if (n - i < uint64_t(len)) return false;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

// A cursor over the mapped bytes; every read checks the bounds first.
struct Reader {
    const uint8_t* p;
    uint64_t size;
    uint64_t pos = 0;

    uint64_t remaining() const { return size - pos; }

    void need(uint64_t n, const char* what) const {
        if (n > remaining())
            throw std::invalid_argument(std::string("truncated GGUF file: ") + what + " needs " +
                                        std::to_string(n) + " bytes, " +
                                        std::to_string(remaining()) + " remain" + at(pos));
    }
    template <typename T>
    T get(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, p + pos, sizeof(T));
        pos += sizeof(T);
        return v;
    }
    std::string str(const char* what) {
        const uint64_t start = pos;
        const uint64_t n = get<uint64_t>(what);
        if (n > remaining())
            throw std::invalid_argument(std::string("corrupt GGUF file: ") + what + " of length " +
                                        std::to_string(n) + " runs past the end of the file" +
                                        at(start));
        if (!valid_utf8(p + pos, n))
            throw std::invalid_argument(std::string("corrupt GGUF file: ") + what +
                                        " is not valid UTF-8" + at(start));
        std::string s(reinterpret_cast<const char*>(p + pos), size_t(n));
        pos += n;
        return s;
    }
};

uint64_t scalar_size(GGUFType t) {
    switch (t) {
        case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::BOOL: return 1;
        case GGUFType::UINT16: case GGUFType::INT16: return 2;
        case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::FLOAT32: return 4;
        case GGUFType::UINT64: case GGUFType::INT64: case GGUFType::FLOAT64: return 8;
        default: return 0;
    }
}

GGUFType value_type(Reader& r, const std::string& key) {
    const uint64_t start = r.pos;
    const uint32_t t = r.get<uint32_t>("value type");
    if (t > uint32_t(GGUFType::FLOAT64))
        throw std::invalid_argument("corrupt GGUF file: unknown value type " + std::to_string(t) +
                                    " for key '" + key + "'" + at(start));
    return GGUFType(t);
}

void read_value(Reader& r, GGUFValue& v, GGUFType type, const std::string& key, int depth) {
    v.type = type;
    switch (type) {
        case GGUFType::UINT8: v.u = r.get<uint8_t>("value"); return;
        case GGUFType::INT8: v.i = r.get<int8_t>("value"); return;
        case GGUFType::UINT16: v.u = r.get<uint16_t>("value"); return;
        case GGUFType::INT16: v.i = r.get<int16_t>("value"); return;
        case GGUFType::UINT32: v.u = r.get<uint32_t>("value"); return;
        case GGUFType::INT32: v.i = r.get<int32_t>("value"); return;
        case GGUFType::UINT64: v.u = r.get<uint64_t>("value"); return;
        case GGUFType::INT64: v.i = r.get<int64_t>("value"); return;
        case GGUFType::FLOAT32: v.f = r.get<float>("value"); return;
        case GGUFType::FLOAT64: v.f = r.get<double>("value"); return;
        case GGUFType::BOOL: {
            const uint64_t start = r.pos;
            const uint8_t b = r.get<uint8_t>("value");
            if (b > 1)
                throw std::invalid_argument("corrupt GGUF file: bool value " + std::to_string(b) +
                                            " for key '" + key + "'" + at(start));
            v.u = b;
            return;
        }
        case GGUFType::STRING: v.str = r.str("string value"); return;
        case GGUFType::ARRAY: {
            if (depth >= kMaxArrayDepth)
                throw std::invalid_argument("corrupt GGUF file: arrays nested deeper than " +
                                            std::to_string(kMaxArrayDepth) + " for key '" + key +
                                            "'" + at(r.pos));
            v.elem = value_type(r, key);
            const uint64_t start = r.pos;
            v.count = r.get<uint64_t>("array length");
            // the smallest element takes 1 byte (a string 8, an array 12)
            const uint64_t min_elem = v.elem == GGUFType::STRING ? 8
                                      : v.elem == GGUFType::ARRAY ? 12
                                                                   : scalar_size(v.elem);
            if (v.count > r.remaining() / min_elem)
                throw std::invalid_argument("corrupt GGUF file: array of " +
                                            std::to_string(v.count) + " elements for key '" + key +
                                            "' is larger than the file" + at(start));
            if (v.elem == GGUFType::STRING) {
                v.strs.reserve(size_t(v.count));
                for (uint64_t k = 0; k < v.count; k++) v.strs.push_back(r.str("array string"));
            } else if (v.elem == GGUFType::ARRAY) {
                v.items.resize(size_t(v.count));
                for (auto& item : v.items) read_value(r, item, GGUFType::ARRAY, key, depth + 1);
            } else {
                v.data_offset = r.pos;
                r.pos += v.count * min_elem;
            }
            return;
        }
    }
}

}  // namespace

const char* gguf_type_name(GGUFType t) {
    static const char* names[] = {"UINT8",  "INT8",  "UINT16", "INT16", "UINT32",
                                  "INT32",  "FLOAT32", "BOOL", "STRING", "ARRAY",
                                  "UINT64", "INT64", "FLOAT64"};
    const uint32_t i = uint32_t(t);
    return i < sizeof(names) / sizeof(names[0]) ? names[i] : "?";
}

GGUFFile::GGUFFile(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        if (err == ENOENT) throw std::invalid_argument("no such file: " + path);
        throw std::runtime_error("cannot open " + path + ": " + std::strerror(err));
    }
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw std::invalid_argument("not a regular file: " + path);
    }
    size_ = uint64_t(st.st_size);
    mtime_ns_ = int64_t(st.st_mtim.tv_sec) * 1000000000 + int64_t(st.st_mtim.tv_nsec);
    if (size_ < 24) {
        ::close(fd);
        throw std::invalid_argument("not a GGUF file (only " + std::to_string(size_) +
                                    " bytes): " + path);
    }
    void* m = ::mmap(nullptr, size_t(size_), PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        throw std::runtime_error("cannot map " + path + ": " + std::strerror(err));
    }
    fd_ = fd;
    base_ = static_cast<const uint8_t*>(m);
    try {
        Reader r{base_, size_};
        const uint32_t magic = r.get<uint32_t>("magic");
        if (std::memcmp(&magic, "GGUF", 4) != 0)
            throw std::invalid_argument("not a GGUF file (bad magic): " + path);
        version_ = r.get<uint32_t>("version");
        if (version_ != 2 && version_ != 3)
            throw std::invalid_argument("unsupported GGUF version " + std::to_string(version_) +
                                        "; supported: 2, 3");
        const uint64_t n_tensors = r.get<uint64_t>("tensor count");
        const uint64_t n_kv = r.get<uint64_t>("metadata count");
        // a key-value pair takes at least 13 bytes, a tensor entry at least 28
        if (n_kv > r.remaining() / 13)
            throw std::invalid_argument("corrupt GGUF file: " + std::to_string(n_kv) +
                                        " metadata entries cannot fit in the file");
        if (n_tensors > r.remaining() / 28)
            throw std::invalid_argument("corrupt GGUF file: " + std::to_string(n_tensors) +
                                        " tensors cannot fit in the file");

        kv_.reserve(size_t(n_kv));
        for (uint64_t k = 0; k < n_kv; k++) {
            const uint64_t start = r.pos;
            std::string key = r.str("metadata key");
            if (kv_index_.count(key))
                throw std::invalid_argument("corrupt GGUF file: duplicate metadata key '" + key +
                                            "'" + at(start));
            GGUFValue v;
            read_value(r, v, value_type(r, key), key, 0);
            kv_index_[key] = kv_.size();
            kv_.emplace_back(std::move(key), std::move(v));
        }
        if (const GGUFValue* a = find("general.alignment")) {
            const uint64_t al = a->type == GGUFType::UINT32 || a->type == GGUFType::UINT64 ? a->u : 0;
            if (al == 0 || (al & (al - 1)) != 0 || al > (1u << 20))
                throw std::invalid_argument("corrupt GGUF file: general.alignment must be a power "
                                            "of two up to 1 MiB");
            alignment_ = al;
        }

        tensors_.reserve(size_t(n_tensors));
        for (uint64_t k = 0; k < n_tensors; k++) {
            const uint64_t start = r.pos;
            GGUFTensor t;
            t.name = r.str("tensor name");
            if (tensor_index_.count(t.name))
                throw std::invalid_argument("corrupt GGUF file: duplicate tensor '" + t.name + "'" +
                                            at(start));
            const uint32_t n_dims = r.get<uint32_t>("tensor dimensions");
            if (n_dims == 0 || n_dims > kMaxDims)
                throw std::invalid_argument("corrupt GGUF file: tensor '" + t.name + "' has " +
                                            std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
            uint64_t numel = 1;
            for (uint32_t d = 0; d < n_dims; d++) {
                const uint64_t ne = r.get<uint64_t>("tensor dimension");
                if (ne > (uint64_t(1) << 40) || (ne && numel > (uint64_t(1) << 42) / ne))
                    throw std::invalid_argument("corrupt GGUF file: tensor '" + t.name +
                                                "' has an absurd size");
                numel *= ne;
                t.ne.push_back(int64_t(ne));
            }
            t.type = r.get<uint32_t>("tensor type");
            // any type GGUF defines reads (what computes is the runtime's question)
            const QuantType* info = quant_type(t.type);
            if (!info)
                throw std::invalid_argument("corrupt or unsupported GGUF file: tensor '" + t.name +
                                            "' has unknown type id " + std::to_string(t.type) +
                                            " (not a GGUF tensor type this reader knows)");
            if (t.ne[0] % info->block != 0)
                throw std::invalid_argument("corrupt GGUF file: tensor '" + t.name + "' of type " +
                                            info->name + " has a first dimension of " +
                                            std::to_string(t.ne[0]) + ", not a multiple of " +
                                            std::to_string(info->block));
            t.nbytes = numel / uint64_t(info->block) * uint64_t(info->block_bytes);
            t.offset = r.get<uint64_t>("tensor offset");
            tensor_index_[t.name] = tensors_.size();
            tensors_.push_back(std::move(t));
        }
        data_offset_ = (r.pos + alignment_ - 1) / alignment_ * alignment_;
        if (data_offset_ > size_ && !tensors_.empty())
            throw std::invalid_argument("truncated GGUF file: no tensor data after the header");
        for (auto& t : tensors_) {
            if (t.offset % alignment_ != 0)
                throw std::invalid_argument("corrupt GGUF file: tensor '" + t.name +
                                            "' data offset " + std::to_string(t.offset) +
                                            " is not aligned to " + std::to_string(alignment_));
            const uint64_t room = size_ >= data_offset_ ? size_ - data_offset_ : 0;
            if (t.offset > room || t.nbytes > room - t.offset)
                throw std::invalid_argument("truncated GGUF file: tensor '" + t.name + "' needs bytes " +
                                            std::to_string(data_offset_ + t.offset) + " to " +
                                            std::to_string(data_offset_ + t.offset + t.nbytes) +
                                            " but the file has " + std::to_string(size_));
            t.offset += data_offset_;
        }
    } catch (...) {
        ::munmap(const_cast<uint8_t*>(base_), size_t(size_));
        base_ = nullptr;
        ::close(fd_);
        fd_ = -1;
        throw;
    }
}

GGUFFile::~GGUFFile() {
    if (base_) ::munmap(const_cast<uint8_t*>(base_), size_t(size_));
    if (fd_ >= 0) ::close(fd_);
}

std::string GGUFFile::changed() const {
    struct stat st;
    if (fd_ < 0 || ::fstat(fd_, &st) != 0) return "";  // nothing to compare with
    const uint64_t size = uint64_t(st.st_size);
    const int64_t mtime = int64_t(st.st_mtim.tv_sec) * 1000000000 + int64_t(st.st_mtim.tv_nsec);
    if (size == size_ && mtime == mtime_ns_) return "";
    std::string why = size != size_ ? "its size went from " + std::to_string(size_) + " to " +
                                          std::to_string(size) + " bytes"
                                    : "it was modified in place";
    return "the model file " + path_ + " changed on disk while loaded (" + why +
           "); its mapped weights are no longer valid: load the model again (replace a model "
           "file by writing a new file and renaming it over the old one, which loaded models "
           "do not notice)";
}

const GGUFValue* GGUFFile::find(const std::string& key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GGUFTensor* GGUFFile::tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace pyllm
